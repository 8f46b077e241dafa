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

    /// <summary>Over max_connections: the gateway's 503 page (with the refusal's id) that clients can show, rather than a bare reset.</summary>
    protected override void RejectOverLimit(Socket socket)
    {
        var x = Admission.OverLimit(socket.RemoteEndPoint?.ToString());
        x.Status = 503;
        var page = System.Text.Encoding.UTF8.GetBytes(Http.ErrorPages.Html(503, "too many connections", x.Id, null));
        var head = System.Text.Encoding.ASCII.GetBytes(
            $"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {Http.ErrorPages.ContentType}\r\nContent-Length: {page.Length}\r\nX-Bastion-Request-Id: {x.Id}\r\nConnection: close\r\n\r\n");
        try
        {
            // Non-blocking: a client that reads nothing must not hold the accept path; what does not fit is dropped.
            socket.Blocking = false;
            socket.Send([new ArraySegment<byte>(head), new ArraySegment<byte>(page)]);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException) { }
        x.Close();
        try { socket.Close(1); } catch (ObjectDisposedException) { }
    }

    protected override Task HandleAsync(ClientConnection conn) =>
        new HttpProxySession(Ctx, conn, _upstream, _inspection).RunAsync();

    public override async Task StopAsync(CancellationToken drain)
    {
        await base.StopAsync(drain).ConfigureAwait(false);
        await _inspection.DisposeAsync().ConfigureAwait(false);
    }
}
