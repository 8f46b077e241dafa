using System.Collections.Concurrent;
using System.Net;
using Bastion.Policy.Canonical;
using Bastion.Protocols.Http.Upstream;

namespace Bastion.Protocols.HttpProxy;

/// <summary>
/// The forward proxy's keep-alive pools, one per origin (scheme, host, port) and address it resolved to: the
/// session resolves and judges the address (SPEC 2.1), and the pool connects to that address only (TLS still
/// names the host). Pools with nothing open are dropped and idle connections past their time closed, every few seconds.
/// </summary>
sealed class ForwardPools : IAsyncDisposable
{
    readonly record struct Key(string Host, int Port, bool Tls, IPAddress Address);

    readonly ConcurrentDictionary<Key, UpstreamPool> _pools = new();
    readonly Timer _prune;
    TimeSpan _connectTimeout;

    public ForwardPools(TimeSpan connectTimeout)
    {
        _connectTimeout = connectTimeout;
        _prune = new Timer(_ => _ = PruneAsync(), null, TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(5));
    }

    public int Count => _pools.Count;

    public UpstreamPool For(string host, int port, bool tls, IPAddress address, TimeSpan connectTimeout)
    {
        _connectTimeout = connectTimeout;
        var key = new Key(host, port, tls, address);
        if (_pools.TryGetValue(key, out var pool))
        {
            pool.ConnectTimeout = connectTimeout;
            return pool;
        }
        return _pools.GetOrAdd(key, static (k, t) => new UpstreamPool(HostName.ForUrl(k.Host), k.Port, k.Tls ? UpstreamTls.System : null, t, addresses: [k.Address]), _connectTimeout);
    }

    async Task PruneAsync()
    {
        foreach (var (key, pool) in _pools)
        {
            await pool.PruneAsync().ConfigureAwait(false);
            if (pool.Open == 0 && _pools.TryRemove(new KeyValuePair<Key, UpstreamPool>(key, pool))) await pool.RetireAsync().ConfigureAwait(false);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _prune.DisposeAsync().ConfigureAwait(false);
        foreach (var pool in _pools.Values) await pool.RetireAsync().ConfigureAwait(false);
        _pools.Clear();
    }
}
