using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Bastion.Gateway.Tls;
using Bastion.Protocols.Http.Upstream;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// What requests inside one inspected tunnel go to: the server name the client asked for, and the way to the origin
/// opened during the handshake. HTTP/1.1 tunnels use the engine's own client (<see cref="Pool"/>, its first
/// connection the verified one); HTTP/2 tunnels forward through YARP (<see cref="Upstream"/>). When no origin
/// connection could be had (a refused certificate), <see cref="Failure"/> says why and every request is answered
/// with an error page instead.
/// </summary>
sealed class InspectedOrigin : IDisposable
{
    /// <summary>The name judged and minted for: the SNI, or the CONNECT host when the client sent none.</summary>
    public required string Name { get; init; }
    public string? Sni { get; init; }
    public required int Port { get; init; }
    /// <summary>host, or host:port off 443: the authority of URLs inside the tunnel and the Host the origin sees.</summary>
    public string Authority => _authority ??= Port == 443 ? HostText : $"{HostText}:{Port}";
    string HostText => Name.Contains(':') ? $"[{Name}]" : Name;
    string? _authority;
    /// <summary>The last URL made and its path, for the next request to the same path (a keep-alive client asking again).</summary>
    string? _lastPath, _lastUrl;
    public string? Failure { get; init; }
    public bool Http2 { get; init; }
    /// <summary>HTTP/1.1 tunnels: the origin connections, reconnecting to the same address when the origin closes one.</summary>
    public UpstreamPool? Pool { get; set; }
    /// <summary>HTTP/2 tunnels: YARP's client to the origin.</summary>
    public HttpMessageInvoker? Upstream { get; set; }

    /// <summary>The URL a request inside the tunnel is judged and logged by.</summary>
    public string Url(string pathAndQuery)
    {
        if (_lastUrl is not null && _lastPath == pathAndQuery) return _lastUrl;
        _lastPath = pathAndQuery;
        return _lastUrl = $"https://{Authority}{pathAndQuery}";
    }

    /// <summary>Whether a Host (or :authority) names the tunnel's origin: its authority, or with ":443" spelled out.</summary>
    public bool IsAuthority(ReadOnlySpan<byte> host)
    {
        var a = Authority;
        return Codec.HttpChars.EqualsIgnoreCase(host, a)
            || (Port == 443 && host.Length == a.Length + 4 && host.EndsWith(":443"u8) && Codec.HttpChars.EqualsIgnoreCase(host[..a.Length], a));
    }

    public bool IsAuthority(string host) =>
        host.Equals(Authority, StringComparison.OrdinalIgnoreCase)
        || (Port == 443 && host.Length == Authority.Length + 4 && host.EndsWith(":443", StringComparison.Ordinal)
            && host.AsSpan(0, Authority.Length).Equals(Authority, StringComparison.OrdinalIgnoreCase));

    /// <summary>Where YARP sends an HTTP/2 request (its client does TLS itself).</summary>
    public string UpstreamPrefix => $"https://{Authority}";

    /// <summary>Why the last further connection to the origin failed its verification, for the error page.</summary>
    public string? LastFailure;

    public void Dispose() => Upstream?.Dispose();

    /// <summary>The HTTP/1.1 pool: to the CONNECT's address, TLS for the name, verified as the first connection was.</summary>
    public static UpstreamPool Http1Pool(InspectedOrigin origin, IPAddress address, InspectionSettings settings, Configuration.Limits limits)
    {
        bool insecure = settings.IsInsecureUpstream(origin.Name);
        var verifier = settings.Verifier;
        var tls = new UpstreamTls((host, cert, chain, errors) => insecure ? null : verifier.Verify(host, cert, chain, errors), verifier.HandshakePolicy);
        return new UpstreamPool(origin.Name, origin.Port, tls, limits.ConnectTimeout, maxIdle: 4, addresses: [address]);
    }

    /// <summary>An HTTP/2 client to the origin's address that does TLS itself, verified as the first connection was.</summary>
    public static HttpMessageInvoker Http2Client(InspectedOrigin origin, IPAddress address, int port, InspectionSettings settings, Configuration.Limits limits)
    {
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = limits.ConnectTimeout,
            PooledConnectionIdleTimeout = limits.IdleTimeout,
            ActivityHeadersPropagator = null,
            MaxResponseHeadersLength = 64,
            EnableMultipleHttp2Connections = false,
            RequestHeaderEncodingSelector = (_, _) => System.Text.Encoding.Latin1,
            ConnectCallback = async (_, ct) =>
            {
                var c = await Gateway.Connector.ConnectAsync([address], port, limits.ConnectTimeout, ct).ConfigureAwait(false);
                if (!c.Ok) throw new HttpRequestException(HttpRequestError.ConnectionError, $"cannot connect to {origin.Name}:{port}: {c.Message ?? c.Error.ToString()}");
                return new NetworkStream(c.Socket!, ownsSocket: true);
            },
        };
        bool insecure = settings.IsInsecureUpstream(origin.Name);
        handler.SslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = origin.Name,
            CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
            CertificateChainPolicy = settings.Verifier.HandshakePolicy(),
            RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
            {
                if (insecure) return true;
                var problem = settings.Verifier.Verify(origin.Name, cert as System.Security.Cryptography.X509Certificates.X509Certificate2, chain, errors);
                if (problem is not null) origin.LastFailure = problem;
                return problem is null;
            },
        };
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }
}
