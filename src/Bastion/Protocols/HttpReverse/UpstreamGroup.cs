using System.Net.Http;
using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using Bastion.Configuration;
using Bastion.Gateway;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// An `upstreams:` group (or a route's inline URL): targets, the balancing choice, active health checks, and the
/// HTTP client (connection pool, TLS settings) YARP's forwarder sends through.
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
    public HttpMessageInvoker Invoker { get; }
    readonly TimeSpan _connectTimeout;

    public UpstreamGroup(string name, UpstreamConfig? cfg, IEnumerable<string> targets, BastionConfig root, TimeSpan connectTimeout)
    {
        _connectTimeout = connectTimeout;
        Invoker = new HttpMessageInvoker(CreateHandler(cfg, root, connectTimeout), disposeHandler: true);
        Set = new UpstreamSet(name, cfg, targets.Select(NormalizeTarget), PassiveDownTime, ProbeAsync);
    }

    /// <summary>The active check: GET the health path; 2xx and 3xx are healthy.</summary>
    async Task<bool> ProbeAsync(UpstreamTarget t, HealthConfig h, CancellationToken ct)
    {
        var path = h.Path.StartsWith('/') ? h.Path : "/" + h.Path;
        using var req = new HttpRequestMessage(HttpMethod.Get, t.Prefix + path);
        req.Headers.TryAddWithoutValidation("User-Agent", "bastion-health-check");
        using var resp = await Invoker.SendAsync(req, ct).ConfigureAwait(false);
        return (int)resp.StatusCode is >= 200 and < 400;
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
    public UpstreamTarget? Pick() => Set.Pick();

    public void ConnectFailed(UpstreamTarget t) => Set.ConnectFailed(t);

    public void Answered(UpstreamTarget t, int status) => Set.Answered(t, status);

    /// <summary>Completed rounds of active checks (tests wait on state, not time).</summary>
    public long HealthRounds => Set.HealthRounds;

    /// <summary>True when the new configuration would build the same group (state and connections are kept).</summary>
    public bool SameAs(UpstreamConfig? cfg, IEnumerable<string> targets, TimeSpan connectTimeout) =>
        _connectTimeout == connectTimeout &&
        Set.SameAs(cfg, targets.Select(NormalizeTarget)) &&
        (cfg is null || (cfg.CaFile == Config!.CaFile && cfg.InsecureTls == Config.InsecureTls));

    public void Dispose()
    {
        Set.Dispose();
        // Requests in flight may still use the pool: let it go once they have had time to finish.
        var invoker = Invoker;
        _ = Task.Delay(TimeSpan.FromMinutes(2)).ContinueWith(_ => invoker.Dispose(), TaskScheduler.Default);
    }
}
