using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// The raw client for tests: TCP exchanges for input no well-behaved client would send (<see cref="Raw"/>), a
/// connection kept open across steps (<see cref="RawClient"/>), and socket helpers with deadlines (<see cref="Sock"/>).
/// </summary>
public static class Raw
{
    /// <summary>Sends bytes and reads until the server closes (or the timeout passes); returns what came back.</summary>
    public static async Task<string> ExchangeAsync(int port, string request, TimeSpan? timeout = null, bool halfClose = false)
    {
        Socket s;
        try
        {
            s = await Sock.ConnectAsync(port);
            await s.SendAsync(Encoding.Latin1.GetBytes(request), SocketFlags.None);
        }
        catch (SocketException) { return "<<reset>>"; }
        using var _ = s;
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

/// <summary>A client connection kept open across steps: CONNECT tunnels and keep-alive requests by hand.</summary>
public sealed class RawClient : IDisposable
{
    readonly Socket _s = new(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
    readonly byte[] _buf = new byte[64 * 1024];
    readonly StringBuilder _pending = new();

    public static async Task<RawClient> ConnectAsync(int port)
    {
        var c = new RawClient();
        await c._s.ConnectAsync(IPAddress.Loopback, port);
        return c;
    }

    public Task SendAsync(string text) => _s.SendAsync(Encoding.Latin1.GetBytes(text), SocketFlags.None);

    /// <summary>Reads one HTTP response head and its Content-Length body (none for a 2xx to CONNECT).</summary>
    public async Task<(int Status, string Head, string Body)> ReadResponseAsync(bool connect = false)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (true)
        {
            var text = _pending.ToString();
            int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                var head = text[..end];
                int status = int.Parse(head.Split(' ')[1], CultureInfo.InvariantCulture);
                var m = Regex.Match(head, @"(?im)^content-length:\s*(\d+)");
                int len = connect && status / 100 == 2 ? 0 : m.Success ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
                if (text.Length >= end + 4 + len)
                {
                    _pending.Remove(0, end + 4 + len);
                    return (status, head, text.Substring(end + 4, len));
                }
            }
            int n = await _s.ReceiveAsync(_buf, SocketFlags.None, cts.Token);
            if (n == 0) throw new IOException($"connection closed; got so far: {_pending}");
            _pending.Append(Encoding.Latin1.GetString(_buf, 0, n));
        }
    }

    /// <summary>Sends a line through an open tunnel and waits for the echo.</summary>
    public async Task<string> EchoAsync(string line)
    {
        await SendAsync(line);
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (_pending.Length < line.Length)
        {
            int n = await _s.ReceiveAsync(_buf, SocketFlags.None, cts.Token);
            if (n == 0) break;
            _pending.Append(Encoding.Latin1.GetString(_buf, 0, n));
        }
        var got = _pending.ToString();
        _pending.Clear();
        return got;
    }

    public void Dispose() => _s.Dispose();
}

/// <summary>Socket helpers with deadlines.</summary>
public static class Sock
{
    public static async Task<Socket> ConnectAsync(int port, IPAddress? address = null)
    {
        var s = new Socket((address ?? IPAddress.Loopback).AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await s.ConnectAsync(new IPEndPoint(address ?? IPAddress.Loopback, port), cts.Token);
        return s;
    }

    public static async Task SendAsync(this Socket s, byte[] data)
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await s.SendAsync(data, SocketFlags.None, cts.Token);
    }

    /// <summary>Reads exactly n bytes (fails on end of stream or after 10 s).</summary>
    public static async Task<byte[]> ReadExactlyAsync(this Socket s, int n)
    {
        var buf = new byte[n];
        int got = 0;
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (got < n)
        {
            int r = await s.ReceiveAsync(buf.AsMemory(got), SocketFlags.None, cts.Token);
            if (r == 0) throw new EndOfStreamException($"closed after {got} of {n} bytes");
            got += r;
        }
        return buf;
    }

    /// <summary>Reads until the peer closes (or resets); returns what came.</summary>
    public static async Task<byte[]> ReadToEndAsync(this Socket s, TimeSpan? timeout = null)
    {
        var ms = new MemoryStream();
        var buf = new byte[64 * 1024];
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(10));
        try
        {
            int r;
            while ((r = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token)) > 0) ms.Write(buf, 0, r);
        }
        catch (SocketException) { }
        return ms.ToArray();
    }
}
