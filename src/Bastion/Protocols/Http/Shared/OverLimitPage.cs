using System.Net.Sockets;
using System.Text;
using Bastion.Gateway;

namespace Bastion.Protocols.Http;

/// <summary>
/// Over max_connections on a plain-HTTP listener (forward proxy, reverse proxy without TLS): the gateway's 503 page
/// with the refusal's id, which clients can show, rather than a bare reset. Written without waiting: a client that
/// reads nothing must not hold the accept loop, so what does not fit in the socket buffer is dropped.
/// </summary>
public static class OverLimitPage
{
    public static void Answer(Socket socket, Admission admission)
    {
        var x = admission.OverLimit(socket.RemoteEndPoint?.ToString());
        x.Status = 503;
        x.ContentType = ErrorPages.ContentType;
        var page = Encoding.UTF8.GetBytes(ErrorPages.Html(503, "too many connections", x.Id, null));
        var head = Encoding.ASCII.GetBytes(
            $"HTTP/1.1 503 Service Unavailable\r\nContent-Type: {ErrorPages.ContentType}\r\nContent-Length: {page.Length}\r\nX-Bastion-Request-Id: {x.Id}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n");
        try
        {
            socket.Blocking = false;
            int sent = socket.Send([new ArraySegment<byte>(head), new ArraySegment<byte>(page)]);
            x.AddOut(sent);
            socket.Shutdown(SocketShutdown.Send);
        }
        catch (SocketException) { }
        x.Close();
        try { socket.Close(1); } catch (ObjectDisposedException) { }
    }
}
