using System.Diagnostics;
using System.Net.Security;

namespace Bastion.Gateway.Tls;

/// <summary>
/// Minted certificates by server name: bounded (least recently used goes first), reused until they near their
/// end, and minted once however many connections ask for a new name at the same moment. Minting runs on the
/// thread pool, so a handshake waiting for its certificate never holds an I/O thread or other connections.
/// Dropped whole when the CA changes; its leaf key is left to the collector, as handshakes may still hold it.
/// </summary>
public sealed class MintedCertificateCache
{
    /// <summary>A certificate is replaced once less than this is left of its validity.</summary>
    static readonly TimeSpan RenewBefore = TimeSpan.FromDays(1);

    readonly CertificateMinter _minter;
    readonly int _capacity;
    readonly object _lock = new();
    readonly Dictionary<string, LinkedListNode<Entry>> _byName = new(StringComparer.Ordinal);
    readonly LinkedList<Entry> _lru = new();
    long _minted, _hits;
    double _mintMsTotal;

    sealed record Entry(string Name, Task<SslStreamCertificateContext> Context, DateTime RenewAt);

    readonly Action<TimeSpan>? _onMinted;

    /// <param name="onMinted">Told how long each minting took (the listener's metrics).</param>
    public MintedCertificateCache(CertificateAuthority ca, int capacity = 10_000, Action<TimeSpan>? onMinted = null)
    {
        _minter = new CertificateMinter(ca);
        _capacity = capacity;
        _onMinted = onMinted;
    }

    public CertificateAuthority Ca => _minter.Ca;
    public int Count { get { lock (_lock) return _byName.Count; } }
    public long Minted => Interlocked.Read(ref _minted);
    public long Hits => Interlocked.Read(ref _hits);
    /// <summary>Mean minting time in milliseconds (key reuse makes it one signature plus building the context).</summary>
    public double MeanMintMs { get { lock (_lock) return _minted == 0 ? 0 : _mintMsTotal / _minted; } }

    /// <summary>The certificate context for <paramref name="name"/> (lowercase DNS name or IP literal).</summary>
    public Task<SslStreamCertificateContext> GetAsync(string name)
    {
        var now = DateTime.UtcNow;
        lock (_lock)
        {
            if (_byName.TryGetValue(name, out var node))
            {
                var e = node.Value;
                if (now < e.RenewAt && !e.Context.IsFaulted && !e.Context.IsCanceled)
                {
                    _lru.Remove(node);
                    _lru.AddFirst(node);
                    _hits++;
                    return e.Context;
                }
                _lru.Remove(node);
                _byName.Remove(name);
            }
            var task = Task.Run(() => Mint(name));
            var renewAt = now + CertificateMinter.Lifetime - RenewBefore;
            var fresh = _lru.AddFirst(new Entry(name, task, renewAt));
            _byName[name] = fresh;
            while (_byName.Count > _capacity && _lru.Last is { } last)
            {
                _lru.RemoveLast();
                _byName.Remove(last.Value.Name);
            }
            return task;
        }
    }

    SslStreamCertificateContext Mint(string name)
    {
        var start = Stopwatch.GetTimestamp();
        var ctx = _minter.MintContext(name);
        var took = Stopwatch.GetElapsedTime(start);
        lock (_lock)
        {
            _minted++;
            _mintMsTotal += took.TotalMilliseconds;
        }
        _onMinted?.Invoke(took);
        return ctx;
    }
}
