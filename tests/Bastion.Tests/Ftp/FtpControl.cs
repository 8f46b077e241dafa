using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Bastion.Tests.Ftp;

/// <summary>
/// A raw FTP control connection for the exchanges no well-behaved client makes (bounces, garbage, over-long
/// lines): send a line, read one reply (multi-line aware), with a deadline on every read.
/// </summary>
public sealed class FtpControl : IAsyncDisposable
{
    readonly Socket _s;
    readonly byte[] _buf = new byte[64 * 1024];
    int _len;

    public Socket Socket => _s;

    FtpControl(Socket s) => _s = s;

    public static async Task<FtpControl> ConnectAsync(int port, IPAddress? address = null, bool greet = true)
    {
        address ??= IPAddress.Loopback;
        var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(address, port);
        var c = new FtpControl(s);
        if (greet)
        {
            var (code, text) = await c.ReadReplyAsync();
            if (code != 220) throw new InvalidOperationException($"greeting: {text}");
        }
        return c;
    }

    public async Task LoginAsync(string user = "alice", string password = "secret")
    {
        var (code, text) = await CommandAsync($"USER {user}");
        if (code == 331) (code, text) = await CommandAsync($"PASS {password}");
        if (code != 230) throw new InvalidOperationException($"login: {text}");
    }

    public async Task<(int Code, string Text)> CommandAsync(string line)
    {
        await SendAsync(line + "\r\n");
        return await ReadReplyAsync();
    }

    public Task SendAsync(string raw) => SendAsync(Encoding.Latin1.GetBytes(raw));

    public async Task SendAsync(byte[] raw) => await _s.SendAsync(raw, SocketFlags.None);

    /// <summary>One reply: its code and its whole text (every line). Code 0 when the connection closed first.</summary>
    public async Task<(int Code, string Text)> ReadReplyAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(15));
        var sb = new StringBuilder();
        string? code = null;
        while (true)
        {
            var line = await ReadLineAsync(cts.Token);
            if (line is null) return (0, sb.ToString());
            sb.Append(line).Append('\n');
            if (code is null)
            {
                if (line.Length < 3) return (-1, sb.ToString());
                code = line[..3];
                if (line.Length == 3 || line[3] == ' ') return (int.Parse(code), sb.ToString());
            }
            else if (line.StartsWith(code + " ", StringComparison.Ordinal)) return (int.Parse(code), sb.ToString());
        }
    }

    async Task<string?> ReadLineAsync(CancellationToken ct)
    {
        while (true)
        {
            int lf = Array.IndexOf(_buf, (byte)'\n', 0, _len);
            if (lf >= 0)
            {
                var line = Encoding.UTF8.GetString(_buf, 0, lf).TrimEnd('\r');
                Buffer.BlockCopy(_buf, lf + 1, _buf, 0, _len - lf - 1);
                _len -= lf + 1;
                return line;
            }
            int n = await _s.ReceiveAsync(_buf.AsMemory(_len), SocketFlags.None, ct);
            if (n == 0) return null;
            _len += n;
        }
    }

    /// <summary>EPSV, then a connection to the port the reply names (from <paramref name="from"/> when given).</summary>
    public async Task<Socket> EpsvConnectAsync(IPAddress? from = null)
    {
        var (code, text) = await CommandAsync("EPSV");
        if (code != 229) throw new InvalidOperationException($"EPSV: {text}");
        int port = EpsvPort(text);
        var remote = ((IPEndPoint)_s.RemoteEndPoint!).Address;
        var d = new Socket(remote.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        if (from is not null) d.Bind(new IPEndPoint(from, 0));
        await d.ConnectAsync(remote, port);
        return d;
    }

    public static int EpsvPort(string reply)
    {
        int a = reply.IndexOf("(|||", StringComparison.Ordinal) + 4;
        return int.Parse(reply[a..reply.IndexOf("|)", a, StringComparison.Ordinal)]);
    }

    /// <summary>Reads a data connection to its end.</summary>
    public static async Task<byte[]> ReadAllAsync(Socket d)
    {
        using var ms = new MemoryStream();
        var buf = new byte[64 * 1024];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        int n;
        while ((n = await d.ReceiveAsync(buf, SocketFlags.None, cts.Token)) > 0) ms.Write(buf, 0, n);
        return ms.ToArray();
    }

    public ValueTask DisposeAsync()
    {
        _s.Dispose();
        return ValueTask.CompletedTask;
    }
}
