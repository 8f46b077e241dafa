using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Admin;

/// <summary>Talks to a gateway's admin listener the way an operator's tools would: plain HTTP on loopback.</summary>
public static class AdminHttp
{
    static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false, PooledConnectionLifetime = TimeSpan.FromSeconds(5) })
    {
        Timeout = TimeSpan.FromSeconds(15),
    };

    public static async Task<(HttpStatusCode Status, string Body)> GetAsync(int port, string path, string? token = null, string? host = null)
    {
        using var req = new HttpRequestMessage(HttpMethod.Get, $"http://127.0.0.1:{port}{path}");
        if (token is not null) req.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        if (host is not null) req.Headers.Host = host;
        using var resp = await Client.SendAsync(req);
        return (resp.StatusCode, await resp.Content.ReadAsStringAsync());
    }

    public static async Task<JsonElement> JsonAsync(int port, string path, string? token = null)
    {
        var (status, body) = await GetAsync(port, path, token);
        Assert.True(status == HttpStatusCode.OK, $"{path}: {(int)status} {body}");
        return JsonDocument.Parse(body).RootElement.Clone();
    }

    /// <summary>The value of one sample in Prometheus text (labels given as they appear, in order), or null.</summary>
    public static double? Sample(string metrics, string name, string labels = "")
    {
        var key = labels.Length > 0 ? $"{name}{{{labels}}} " : $"{name} ";
        foreach (var line in metrics.Split('\n'))
            if (line.StartsWith(key, StringComparison.Ordinal))
                return double.Parse(line[key.Length..].Trim(), CultureInfo.InvariantCulture);
        return null;
    }

    /// <summary>The sum of every sample of a metric whose label text contains all of <paramref name="parts"/>.</summary>
    public static double Sum(string metrics, string name, params string[] parts)
    {
        double total = 0;
        foreach (var line in metrics.Split('\n'))
        {
            var m = Regex.Match(line, $@"^{Regex.Escape(name)}(\{{[^}}]*\}})? (\S+)$");
            if (!m.Success) continue;
            if (parts.All(p => m.Groups[1].Value.Contains(p, StringComparison.Ordinal)))
                total += double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        }
        return total;
    }
}

/// <summary>A TCP echo server on 127.0.0.1:0: the far end of CONNECT tunnels that stay open.</summary>
public sealed class EchoServer : IAsyncDisposable
{
    readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    readonly CancellationTokenSource _stop = new();
    readonly Task _loop;

    public int Port { get; }

    public EchoServer()
    {
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _loop = Task.Run(AcceptLoop);
    }

    async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try { s = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception) { return; }
            _ = Task.Run(async () =>
            {
                using (s)
                {
                    var buf = new byte[4096];
                    try
                    {
                        int n;
                        while ((n = await s.ReceiveAsync(buf, SocketFlags.None, _stop.Token)) > 0)
                            await s.SendAsync(buf.AsMemory(0, n), SocketFlags.None, _stop.Token);
                    }
                    catch (Exception) { }
                }
            });
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        try { await _loop; } catch (Exception) { }
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

/// <summary>The repository's root (for artifacts/ and docs/), found from the test binaries' folder.</summary>
public static class Repo
{
    public static string Root
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Bastion.slnx"))) dir = dir.Parent;
            return dir?.FullName ?? Directory.GetCurrentDirectory();
        }
    }

    public static string Artifacts
    {
        get
        {
            var d = Path.Combine(Root, "artifacts");
            Directory.CreateDirectory(d);
            return d;
        }
    }
}
