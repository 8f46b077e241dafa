using System.Net.Sockets;
using Bastion.Gateway;
using Bastion.Hosting;

namespace Bastion.Protocols.HttpProxy;

/// <summary>
/// The forward proxy (SPEC 3, http-proxy) on the HTTP/1.1 engine: its own strict front end on a plain socket, so
/// that CONNECT and ordinary requests are equally first-class on one keep-alive connection, and its own client
/// towards origins with keep-alive pools per origin (<see cref="ForwardPools"/>).
/// </summary>
public sealed class HttpProxyListener(ListenerContext ctx) : StreamListener(ctx)
{
    readonly ForwardPools _pools = new(ctx.Config.Limits.ConnectTimeout);
    readonly Http.Inspection.ForwardInspection _inspection = new(ctx);

    /// <summary>TLS inspection state (minted certificates, HTTP/2 front), for tests and the admin API.</summary>
    internal Http.Inspection.ForwardInspection Inspection => _inspection;

    /// <summary>Origins with a keep-alive pool now (for tests and the admin API).</summary>
    public int Pools => _pools.Count;

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
        new ForwardSession(Ctx, conn, _pools, _inspection).RunAsync();

    public override async Task StopAsync(CancellationToken drain)
    {
        await base.StopAsync(drain).ConfigureAwait(false);
        await _pools.DisposeAsync().ConfigureAwait(false);
        await _inspection.DisposeAsync().ConfigureAwait(false);
    }
}
