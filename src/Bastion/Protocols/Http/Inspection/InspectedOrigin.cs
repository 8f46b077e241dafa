using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Bastion.Gateway.Tls;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// What requests inside one inspected tunnel go to: the server name the client asked for, and an HTTP client bound
/// to the origin connection opened during the handshake. When that connection could not be had (a refused
/// certificate), <see cref="Failure"/> says why and every request is answered with an error page instead.
/// </summary>
sealed class InspectedOrigin : IDisposable
{
    /// <summary>The name judged and minted for: the SNI, or the CONNECT host when the client sent none.</summary>
    public required string Name { get; init; }
    public string? Sni { get; init; }
    public required int Port { get; init; }
    /// <summary>host, or host:port off 443: the authority of URLs inside the tunnel and the Host the origin sees.</summary>
    public string Authority => Port == 443 ? HostText : $"{HostText}:{Port}";
    string HostText => Name.Contains(':') ? $"[{Name}]" : Name;
    public string? Failure { get; init; }
    public HttpMessageInvoker? Upstream { get; set; }
    public bool Http2 { get; init; }

    /// <summary>The URL a request inside the tunnel is judged and logged by.</summary>
    public string Url(string pathAndQuery) => $"https://{Authority}{pathAndQuery}";

    /// <summary>
    /// Where <see cref="Upstream"/> sends requests: plain http over HTTP/1.1, whose connection is already TLS; https
    /// over HTTP/2, whose client must do TLS itself (HTTP/2 names the scheme on the wire, and .NET's HTTP/2 client
    /// cannot adopt an established TLS stream).
    /// </summary>
    public string UpstreamPrefix => Http2 ? $"https://{Authority}" : $"http://{Authority}";

    public Uri UpstreamUri(string pathAndQuery) => new(UpstreamPrefix + pathAndQuery);

    /// <summary>Why the last further connection to the origin failed its verification, for the error page.</summary>
    public string? LastFailure;

    public void Dispose() => Upstream?.Dispose();

    /// <summary>
    /// An HTTP/1.1 client whose first connection is the one already open (its ALPN mirrored to the client); any
    /// further connection it wants (the origin closed the first) is opened and verified the same way.
    /// </summary>
    public static HttpMessageInvoker Http1Client(SslStream first, Func<CancellationToken, ValueTask<Stream>> reconnect, Configuration.Limits limits)
    {
        SslStream? pending = first;
        var handler = Handler(limits);
        handler.ConnectCallback = (_, ct) => Interlocked.Exchange(ref pending, null) is { } s ? ValueTask.FromResult<Stream>(s) : reconnect(ct);
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    /// <summary>An HTTP/2 client to the origin's address that does TLS itself, verified as the first connection was.</summary>
    public static HttpMessageInvoker Http2Client(InspectedOrigin origin, IPAddress address, int port, InspectionSettings settings, Configuration.Limits limits)
    {
        var handler = Handler(limits);
        handler.ConnectCallback = async (_, ct) =>
        {
            var c = await Gateway.Connector.ConnectAsync([address], port, limits.ConnectTimeout, ct).ConfigureAwait(false);
            if (!c.Ok) throw new HttpRequestException(HttpRequestError.ConnectionError, $"cannot connect to {origin.Name}:{port}: {c.Message ?? c.Error.ToString()}");
            return new NetworkStream(c.Socket!, ownsSocket: true);
        };
        bool insecure = settings.IsInsecureUpstream(origin.Name);
        handler.SslOptions = new SslClientAuthenticationOptions
        {
            TargetHost = origin.Name,
            CertificateRevocationCheckMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, cert, chain, errors) =>
            {
                if (insecure) return true;
                var problem = OriginTls.Verify(origin.Name, cert as System.Security.Cryptography.X509Certificates.X509Certificate2, chain, errors, settings.UpstreamRoots);
                if (problem is not null) origin.LastFailure = problem;
                return problem is null;
            },
        };
        handler.EnableMultipleHttp2Connections = false;
        return new HttpMessageInvoker(handler, disposeHandler: true);
    }

    static SocketsHttpHandler Handler(Configuration.Limits limits) => new()
    {
        UseProxy = false,
        UseCookies = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        ConnectTimeout = limits.ConnectTimeout,
        PooledConnectionIdleTimeout = limits.IdleTimeout,
        ActivityHeadersPropagator = null,
        MaxResponseHeadersLength = 64,
        RequestHeaderEncodingSelector = (_, _) => System.Text.Encoding.Latin1,
    };
}
