using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Bastion.Tests.Infrastructure;

/// <summary>Raw TCP exchanges for malformed input that no well-behaved client would send.</summary>
public static class Raw
{
    /// <summary>Sends bytes and reads until the server closes (or the timeout passes); returns what came back.</summary>
    public static async Task<string> ExchangeAsync(int port, string request, TimeSpan? timeout = null, bool halfClose = false)
    {
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            await s.ConnectAsync(IPAddress.Loopback, port);
            await s.SendAsync(Encoding.Latin1.GetBytes(request), SocketFlags.None);
        }
        catch (SocketException) { return "<<reset>>"; }
        if (halfClose) s.Shutdown(SocketShutdown.Send);
        return await ReadUntilCloseAsync(s, timeout ?? TimeSpan.FromSeconds(10));
    }

    public static async Task<string> ReadUntilCloseAsync(Socket s, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var sb = new StringBuilder();
        var buf = new byte[16 * 1024];
        try
        {
            while (true)
            {
                int n = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token);
                if (n == 0) break;
                sb.Append(Encoding.Latin1.GetString(buf, 0, n));
            }
        }
        catch (OperationCanceledException)
        {
            sb.Append("\n<<timeout: connection still open>>");
        }
        catch (SocketException)
        {
            sb.Append("\n<<reset>>");
        }
        return sb.ToString();
    }

    /// <summary>Reads one response head (up to the blank line) without waiting for close.</summary>
    public static async Task<string> ReadHeadAsync(Socket s, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var sb = new StringBuilder();
        var one = new byte[1];
        while (!sb.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal))
        {
            int n = await s.ReceiveAsync(one, SocketFlags.None, cts.Token);
            if (n == 0) break;
            sb.Append((char)one[0]);
        }
        return sb.ToString();
    }
}
