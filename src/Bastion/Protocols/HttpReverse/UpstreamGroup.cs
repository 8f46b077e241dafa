using System.Net.Http;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Bastion.Configuration;

namespace Bastion.Protocols.HttpReverse;

/// <summary>One upstream server of a group, with its health as seen by active checks and by traffic.</summary>
public sealed class UpstreamTarget(string prefix)
{
    /// <summary>Scheme, authority and optional base path, e.g. `http://127.0.0.1:5001`.</summary>
    public string Prefix { get; } = prefix;
    public Uri Uri { get; } = new(prefix);

    volatile bool _activeUp = true;
    long _passiveDownUntil;
    int _inFlight;
    int _consecutiveFails, _consecutivePasses, _passiveFails;

    /// <summary>As the active health check last judged it (up until a check says otherwise).</summary>
    public bool ActiveUp => _activeUp;

    /// <summary>Passive health: out after a connect failure or repeated 5xx, until this tick count.</summary>
    public bool PassiveDown => Environment.TickCount64 < Volatile.Read(ref _passiveDownUntil);

    public bool Available => _activeUp && !PassiveDown;

    public int InFlight => Volatile.Read(ref _inFlight);

    public void Begin() => Interlocked.Increment(ref _inFlight);

    public void End() => Interlocked.Decrement(ref _inFlight);

    internal void ActiveResult(bool ok, HealthConfig h)
    {
        if (ok)
        {
            _consecutiveFails = 0;
            if (!_activeUp && ++_consecutivePasses >= h.Passes)
            {
                _activeUp = true;
                _consecutivePasses = 0;
                Volatile.Write(ref _passiveDownUntil, 0);
            }
        }
        else
        {
            _consecutivePasses = 0;
            if (_activeUp && ++_consecutiveFails >= h.Fails)
            {
                _activeUp = false;
                _consecutiveFails = 0;
            }
        }
    }

    /// <summary>A connection failure takes the target out at once (like nginx max_fails=1).</summary>
    public void ConnectFailed(TimeSpan downFor)
    {
        Volatile.Write(ref _passiveDownUntil, Environment.TickCount64 + (long)downFor.TotalMilliseconds);
        _passiveFails = 0;
    }

    /// <summary>5xx answers take it out after <paramref name="threshold"/> in a row; any other answer resets the count.</summary>
    public void Answered(int status, int threshold, TimeSpan downFor)
    {
        if (status < 500)
        {
            if (_passiveFails != 0) _passiveFails = 0;
            return;
        }
        if (Interlocked.Increment(ref _passiveFails) >= threshold)
        {
            _passiveFails = 0;
            Volatile.Write(ref _passiveDownUntil, Environment.TickCount64 + (long)downFor.TotalMilliseconds);
        }
    }
}

/// <summary>
/// An `upstreams:` group (or a route's inline URL): targets, the balancing choice, active health checks, and the
/// HTTP client (connection pool, TLS settings) YARP's forwarder sends through.
/// </summary>
public sealed class UpstreamGroup : IDisposable
{
    /// <summary>How long passive health keeps a failing target out.</summary>
    public static readonly TimeSpan PassiveDownTime = TimeSpan.FromSeconds(10);
    const int Passive5xxThreshold = 3;

    public string Name { get; }
    public UpstreamConfig? Config { get; }
    public UpstreamTarget[] Targets { get; }
    public HttpMessageInvoker Invoker { get; }
    readonly Balance _balance;
    readonly CancellationTokenSource _stop = new();
    int _next = -1;

    enum Balance { RoundRobin, LeastRequests, PowerOfTwo, Random }

    public UpstreamGroup(string name, UpstreamConfig? cfg, IEnumerable<string> targets, BastionConfig root, TimeSpan connectTimeout)
    {
        Name = name;
        Config = cfg;
        Targets = [.. targets.Select(t => new UpstreamTarget(NormalizeTarget(t)))];
        _balance = cfg?.Balance switch
        {
            "least-requests" => Balance.LeastRequests,
            "power-of-two" => Balance.PowerOfTwo,
            "random" => Balance.Random,
            _ => Balance.RoundRobin,
        };
        _connectTimeout = connectTimeout;
        Invoker = new HttpMessageInvoker(CreateHandler(cfg, root, connectTimeout), disposeHandler: true);
        if (cfg?.Health is { } h) _ = HealthLoop(h, _stop.Token);
    }

    /// <summary>`host:port` means plain HTTP; a URL keeps its scheme and base path (without a trailing slash).</summary>
    public static string NormalizeTarget(string t)
    {
        t = t.Trim();
        if (!t.Contains("://", StringComparison.Ordinal)) t = "http://" + t;
        return t.TrimEnd('/');
    }

    /// <summary>Settings as YARP's own ForwarderHttpClientFactory makes them: no proxy, no redirects, no cookies, no decompression.</summary>
    static SocketsHttpHandler CreateHandler(UpstreamConfig? cfg, BastionConfig root, TimeSpan connectTimeout)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
            UseCookies = false,
            EnableMultipleHttp2Connections = true,
            ActivityHeadersPropagator = null,
            ConnectTimeout = connectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            MaxConnectionsPerServer = int.MaxValue,
        };
        if (cfg?.InsecureTls == true)
        {
            handler.SslOptions.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
        }
        else if (cfg?.CaFile is { } caFile)
        {
            var roots = new X509Certificate2Collection();
            roots.ImportFromPemFile(root.Resolve(caFile));
            handler.SslOptions.RemoteCertificateValidationCallback = (_, cert, _, errors) => TrustedBy(roots, cert, errors);
        }
        return handler;
    }

    /// <summary>Valid for the system store, or chaining to one of the given roots; the name must match either way.</summary>
    static bool TrustedBy(X509Certificate2Collection roots, X509Certificate? cert, SslPolicyErrors errors)
    {
        if (errors == SslPolicyErrors.None) return true;
        if ((errors & ~SslPolicyErrors.RemoteCertificateChainErrors) != 0 || cert is null) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(roots);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var c2 = new X509Certificate2(cert);
        return chain.Build(c2);
    }

    /// <summary>The target for the next request, or null when every target is out (503).</summary>
    public UpstreamTarget? Pick()
    {
        var t = Targets;
        if (t.Length == 1) return t[0].Available ? t[0] : null;
        switch (_balance)
        {
            case Balance.RoundRobin:
                {
                    int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)t.Length);
                    for (int i = 0; i < t.Length; i++)
                    {
                        var c = t[(start + i) % t.Length];
                        if (c.Available) return c;
                    }
                    return null;
                }
            case Balance.LeastRequests:
                {
                    UpstreamTarget? best = null;
                    // Start at a rotating index so that ties spread instead of piling on the first target.
                    int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)t.Length);
                    for (int i = 0; i < t.Length; i++)
                    {
                        var c = t[(start + i) % t.Length];
                        if (c.Available && (best is null || c.InFlight < best.InFlight)) best = c;
                    }
                    return best;
                }
            case Balance.PowerOfTwo:
                {
                    var a = RandomAvailable(t);
                    var b = RandomAvailable(t);
                    if (a is null) return b;
                    if (b is null) return a;
                    return b.InFlight < a.InFlight ? b : a;
                }
            default:
                return RandomAvailable(t);
        }
    }

    static UpstreamTarget? RandomAvailable(UpstreamTarget[] t)
    {
        int start = Random.Shared.Next(t.Length);
        for (int i = 0; i < t.Length; i++)
        {
            var c = t[(start + i) % t.Length];
            if (c.Available) return c;
        }
        return null;
    }

    public void ConnectFailed(UpstreamTarget t) => t.ConnectFailed(PassiveDownTime);

    public void Answered(UpstreamTarget t, int status) =>
        t.Answered(status, Config?.Health?.Fails ?? Passive5xxThreshold, PassiveDownTime);

    /// <summary>Completed rounds of active checks (tests wait on state, not time).</summary>
    public long HealthRounds => Interlocked.Read(ref _rounds);
    long _rounds;

    async Task HealthLoop(HealthConfig h, CancellationToken stop)
    {
        using var timer = new PeriodicTimer(h.Interval);
        try
        {
            do
            {
                await Task.WhenAll(Targets.Select(t => CheckOne(t, h, stop))).ConfigureAwait(false);
                Interlocked.Increment(ref _rounds);
            }
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false));
        }
        catch (OperationCanceledException) { }
        catch (ObjectDisposedException) { }
    }

    async Task CheckOne(UpstreamTarget t, HealthConfig h, CancellationToken stop)
    {
        bool ok;
        try
        {
            using var cts = CancellationTokenSource.CreateLinkedTokenSource(stop);
            cts.CancelAfter(h.Timeout);
            var path = h.Path.StartsWith('/') ? h.Path : "/" + h.Path;
            using var req = new HttpRequestMessage(HttpMethod.Get, t.Prefix + path);
            req.Headers.TryAddWithoutValidation("User-Agent", "bastion-health-check");
            using var resp = await Invoker.SendAsync(req, cts.Token).ConfigureAwait(false);
            ok = (int)resp.StatusCode is >= 200 and < 400;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            if (stop.IsCancellationRequested) return;
            ok = false;
        }
        t.ActiveResult(ok, h);
    }

    /// <summary>True when the new configuration would build the same group (state and connections are kept).</summary>
    public bool SameAs(UpstreamConfig? cfg, IEnumerable<string> targets, TimeSpan connectTimeout) =>
        _connectTimeout == connectTimeout &&
        Targets.Select(t => t.Prefix).SequenceEqual(targets.Select(NormalizeTarget)) &&
        (cfg is null) == (Config is null) &&
        (cfg is null || (cfg.Balance == Config!.Balance && SameHealth(cfg.Health, Config.Health) && cfg.CaFile == Config.CaFile && cfg.InsecureTls == Config.InsecureTls));

    static bool SameHealth(HealthConfig? a, HealthConfig? b) =>
        a is null || b is null ? a is null && b is null : a with { Pos = default } == b with { Pos = default };

    readonly TimeSpan _connectTimeout;

    public void Dispose()
    {
        _stop.Cancel();
        // Requests in flight may still use the pool: let it go once they have had time to finish.
        var invoker = Invoker;
        _ = Task.Delay(TimeSpan.FromMinutes(2)).ContinueWith(_ => invoker.Dispose(), TaskScheduler.Default);
    }
}
