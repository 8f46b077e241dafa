using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using Bastion.Gateway;
using Bastion.Hosting;

namespace Bastion.Protocols.HttpProxy;

/// <summary>
/// The forward proxy (SPEC 3, http-proxy). Its own HTTP/1.1 front end on a plain socket, so that CONNECT and
/// ordinary requests are equally first-class on one keep-alive connection; forwarding goes through one pooled
/// SocketsHttpHandler per listener.
/// </summary>
public sealed class HttpProxyListener : StreamListener
{
    readonly HttpMessageInvoker _upstream;
    readonly Http.Inspection.ForwardInspection _inspection;

    /// <summary>TLS inspection state (minted certificates, HTTP/2 front), for tests and the admin API.</summary>
    internal Http.Inspection.ForwardInspection Inspection => _inspection;

    public HttpProxyListener(ListenerContext ctx) : base(ctx)
    {
        _inspection = new Http.Inspection.ForwardInspection(ctx);
        var limits = ctx.Config.Limits;
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            ConnectTimeout = limits.ConnectTimeout,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(60),
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            MaxConnectionsPerServer = int.MaxValue,
            ActivityHeadersPropagator = null,
            EnableMultipleHttp2Connections = false,
            MaxResponseHeadersLength = 64,
            // The head parser reads values as Latin-1, so obs-text (RFC 9110 §5.5) crosses byte for byte
            // instead of failing the request with a 502.
            RequestHeaderEncodingSelector = (_, _) => System.Text.Encoding.Latin1,
            ConnectCallback = async (context, ct) =>
            {
                var s = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await s.ConnectAsync(context.DnsEndPoint, ct).ConfigureAwait(false);
                    return new NetworkStream(s, ownsSocket: true);
                }
                catch
                {
                    s.Dispose();
                    throw;
                }
            },
            SslOptions = new SslClientAuthenticationOptions(),
        };
        _upstream = new HttpMessageInvoker(handler, disposeHandler: true);
    }

    static readonly byte[] Busy = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 31\r\nConnection: close\r\n\r\nbastion: too many connections\r\n"u8.ToArray();

    /// <summary>Over max_connections: a 503 that clients can show, rather than a bare reset.</summary>
    protected override void RejectOverLimit(Socket socket)
    {
        try
        {
            socket.Blocking = false;
            socket.Send(Busy);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException) { }
        base.RejectOverLimit(socket);
    }

    protected override Task HandleAsync(ClientConnection conn) =>
        new HttpProxySession(Ctx, conn, _upstream, _inspection).RunAsync();

    public override async Task StopAsync(CancellationToken drain)
    {
        await base.StopAsync(drain).ConfigureAwait(false);
        await _inspection.DisposeAsync().ConfigureAwait(false);
    }
}
