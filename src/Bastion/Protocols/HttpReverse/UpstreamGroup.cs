using System.Net.Http;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Protocols.Http.Codec;
using Bastion.Protocols.Http.Upstream;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// An `upstreams:` group (or a route's inline URL): targets, the balancing choice, active health checks, and the
/// clients: one keep-alive pool per target for the HTTP/1.1 engine (<see cref="PoolFor"/>), and the
/// SocketsHttpHandler YARP's forwarder sends HTTP/2 requests through. Both use the group's TLS trust.
/// </summary>
public sealed class UpstreamGroup : IDisposable
{
    /// <summary>How long passive health keeps a failing target out.</summary>
    public static readonly TimeSpan PassiveDownTime = TimeSpan.FromSeconds(10);

    public string Name => Set.Name;
    public UpstreamConfig? Config => Set.Config;
    /// <summary>Targets, balancing and health: the gateway's shared upstream set.</summary>
    public UpstreamSet Set { get; }
    public UpstreamTarget[] Targets => Set.Targets;
    readonly TimeSpan _connectTimeout;
    readonly UpstreamPool[] _pools;
    readonly string[] _basePaths;
    readonly string[] _authorities;
    HttpMessageInvoker? _invoker;

    public UpstreamGroup(string name, UpstreamConfig? cfg, IEnumerable<string> targets, BastionConfig root, TimeSpan connectTimeout)
    {
        _connectTimeout = connectTimeout;
        Set = new UpstreamSet(name, cfg, targets.Select(NormalizeTarget), PassiveDownTime, probe: null);
        if (cfg?.CaFile is not null || cfg?.InsecureTls == true || Set.Targets.Any(t => t.Uri.Scheme == "https")) MakeTls(cfg, root);
        _pools = [.. Set.Targets.Select(t => new UpstreamPool(t.Uri.IdnHost, t.Port, t.Uri.Scheme == "https" ? _tls : null, connectTimeout))];
        _basePaths = [.. Set.Targets.Select(t => t.Uri.AbsolutePath.TrimEnd('/'))];
        _authorities = [.. Set.Targets.Select(t => t.Uri.Authority)];
        // The probe uses the pools: checks start once they exist.
        Set.StartHealthChecks(ProbeAsync);
    }

    UpstreamTls? _tls;

    /// <summary>
    /// The TLS trust of the group's https targets (and of its HTTP/2 client), made only for a group with TLS: a plain
    /// group loads no TLS or crypto assemblies (compiling a method loads every type it names, hence a method of its own).
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    void MakeTls(UpstreamConfig? cfg, BastionConfig root) => _tls = new UpstreamTls(Validation(cfg, root));

    /// <summary>
    /// The client YARP's forwarder sends HTTP/2 requests through, made on first use: HTTP/1.1 goes through the engine's
    /// pools, so a listener without HTTP/2 never builds (nor loads) .NET's HTTP client.
    /// </summary>
    public HttpMessageInvoker Invoker
    {
        get
        {
            if (Volatile.Read(ref _invoker) is { } made) return made;
            var fresh = new HttpMessageInvoker(CreateHandler(_tls?.Validate, _connectTimeout), disposeHandler: true);
            var won = Interlocked.CompareExchange(ref _invoker, fresh, null);
            if (won is null) return fresh;
            fresh.Dispose();
            return won;
        }
    }

    /// <summary>The HTTP/1.1 keep-alive pool of a target of this group.</summary>
    public UpstreamPool PoolFor(UpstreamTarget t) => _pools[Array.IndexOf(Set.Targets, t)];

    /// <summary>The target's base path (`http://h/base` → `/base`; empty for none): it goes before the request's path.</summary>
    public string BasePath(UpstreamTarget t) => _basePaths[Array.IndexOf(Set.Targets, t)];

    /// <summary>The target's `host[:port]` for the Host field (Uri.Authority builds a new string on every call).</summary>
    public string Authority(UpstreamTarget t) => _authorities[Array.IndexOf(Set.Targets, t)];

    /// <summary>
    /// The active check: GET the health path through the target's keep-alive pool (the engine's client, as traffic
    /// goes); 2xx and 3xx are healthy. The response's body is not wanted: its connection is closed, not read.
    /// </summary>
    async Task<bool> ProbeAsync(UpstreamTarget t, HealthConfig h, CancellationToken ct)
    {
        var path = h.Path.StartsWith('/') ? h.Path : "/" + h.Path;
        var head = new HeadWriter(256);
        head.Append("GET "u8).Append(BasePath(t)).Append(path).Append(" HTTP/1.1\r\nHost: "u8).Append(Authority(t))
            .Append("\r\nUser-Agent: bastion-health-check\r\n\r\n"u8);
        var r = await UpstreamExchange.SendAsync(PoolFor(t), head.WrittenMemory, null, BodyFraming.Empty, 0, headRequest: false,
            connectRequest: false, new UpstreamTimeouts(h.Timeout, h.Timeout), null, 64 * 1024, ct).ConfigureAwait(false);
        head.Release();
        if (r.Connection is not { } c) return false;
        int status = c.Response.Status;
        await c.CloseAsync().ConfigureAwait(false);
        return r.End == UpstreamEnd.Response && status is >= 200 and < 400;
    }

    /// <summary>`host:port` means plain HTTP; a URL keeps its scheme and base path (without a trailing slash).</summary>
    public static string NormalizeTarget(string t)
    {
        t = t.Trim();
        if (!t.Contains("://", StringComparison.Ordinal)) t = "http://" + t;
        return t.TrimEnd('/');
    }

    /// <summary>The group's certificate check: any (insecure_tls), the system's or a CA file's roots (ca_file), or the system's.</summary>
    static RemoteCertificateValidationCallback? Validation(UpstreamConfig? cfg, BastionConfig root)
    {
        if (cfg?.InsecureTls == true) return static (_, _, _, _) => true;
        if (cfg?.CaFile is not { } caFile) return null;
        var roots = new X509Certificate2Collection();
        roots.ImportFromPemFile(root.Resolve(caFile));
        return (_, cert, _, errors) => TrustedBy(roots, cert, errors);
    }

    /// <summary>Settings as YARP's own ForwarderHttpClientFactory makes them: no proxy, no redirects, no cookies, no decompression.</summary>
    static SocketsHttpHandler CreateHandler(RemoteCertificateValidationCallback? validate, TimeSpan connectTimeout)
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
            // Kestrel reads header values as Latin-1: written back the same way, obs-text crosses byte for byte.
            RequestHeaderEncodingSelector = static (_, _) => System.Text.Encoding.Latin1,
        };
        if (validate is not null) handler.SslOptions.RemoteCertificateValidationCallback = validate;
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
    public UpstreamTarget? Pick() => Set.Pick();

    public void ConnectFailed(UpstreamTarget t) => Set.ConnectFailed(t);

    public void Answered(UpstreamTarget t, int status) => Set.Answered(t, status);

    /// <summary>Completed rounds of active checks (tests wait on state, not time).</summary>
    public long HealthRounds => Set.HealthRounds;

    /// <summary>True when the new configuration would build the same group (state and connections are kept).</summary>
    public bool SameAs(UpstreamConfig? cfg, IEnumerable<string> targets, TimeSpan connectTimeout) =>
        _connectTimeout == connectTimeout &&
        Set.SameAs(cfg, targets.Select(NormalizeTarget)) &&
        (cfg is null || (cfg.CaFile == Config!.CaFile && cfg.InsecureTls == Config.InsecureTls && cfg.PreserveHost == Config.PreserveHost));

    public void Dispose()
    {
        Set.Dispose();
        foreach (var p in _pools) _ = p.RetireAsync().AsTask();
        // Requests in flight may still use the pool: let it go once they have had time to finish.
        if (Volatile.Read(ref _invoker) is { } invoker)
            _ = Task.Delay(TimeSpan.FromMinutes(2)).ContinueWith(_ => invoker.Dispose(), TaskScheduler.Default);
    }
}
