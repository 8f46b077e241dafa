using System.Text;
using System.Text.Json;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Smtp;

/// <summary>
/// A real SMTP server for the tests: aiosmtpd (Debian's python3-aiosmtpd) on 127.0.0.1 with an OS-picked port,
/// storing every message it accepts as a file so that tests read exactly what was delivered. Optional STARTTLS.
/// </summary>
public sealed class SmtpSink : IAsyncDisposable
{
    const string Script = """
        import asyncio, json, os, ssl, sys
        from aiosmtpd.smtp import SMTP
        out, cert, key = sys.argv[1], sys.argv[2], sys.argv[3]
        class Store:
            n = 0
            async def handle_DATA(self, server, session, envelope):
                Store.n += 1
                base = os.path.join(out, "%05d" % Store.n)
                with open(base + ".eml", "wb") as f:
                    f.write(envelope.original_content)
                meta = {"from": envelope.mail_from, "rcpt": envelope.rcpt_tos,
                        "options": envelope.mail_options, "tls": session.ssl is not None, "helo": session.host_name}
                with open(base + ".tmp", "w") as f:
                    json.dump(meta, f)
                os.rename(base + ".tmp", base + ".json")
                return "250 2.0.0 stored as %05d" % Store.n
        async def main():
            ctx = None
            if cert != "-":
                ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                ctx.load_cert_chain(cert, key)
            loop = asyncio.get_running_loop()
            srv = await loop.create_server(lambda: SMTP(Store(), tls_context=ctx, hostname="sink.test",
                                           data_size_limit=0, enable_SMTPUTF8=True), "127.0.0.1", 0)
            print("PORT %d" % srv.sockets[0].getsockname()[1], flush=True)
            await srv.serve_forever()
        asyncio.run(main())
        """;

    readonly BackgroundProcess _proc;
    public string Dir { get; }
    public int Port { get; }

    SmtpSink(BackgroundProcess proc, string dir, int port)
    {
        _proc = proc;
        Dir = dir;
        Port = port;
    }

    public static async Task<SmtpSink> StartAsync(bool tls = false)
    {
        var dir = Scratch.NewDir("sink");
        var script = Path.Combine(dir, "sink.py");
        await File.WriteAllTextAsync(script, Script);
        var store = Path.Combine(dir, "mail");
        Directory.CreateDirectory(store);
        string cert = "-", key = "-";
        if (tls) (cert, key) = TestCerts.WritePem(dir, "sink", TestCerts.Localhost());
        var p = Proc.Start("/usr/bin/python3", [script, store, cert, key]);
        await p.WaitForOutputAsync("PORT ", TimeSpan.FromSeconds(20));
        var line = p.Output.Split('\n').First(l => l.StartsWith("PORT ", StringComparison.Ordinal));
        var port = int.Parse(line[5..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
        return new SmtpSink(p, store, port);
    }

    public sealed record Message(string From, string[] Rcpt, string[] Options, bool Tls, string Helo, byte[] Content)
    {
        public string Text => Encoding.UTF8.GetString(Content);
    }

    public List<Message> Messages()
    {
        var list = new List<Message>();
        foreach (var json in Directory.GetFiles(Dir, "*.json").Order(StringComparer.Ordinal))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            var r = doc.RootElement;
            list.Add(new Message(r.GetProperty("from").GetString()!,
                [.. r.GetProperty("rcpt").EnumerateArray().Select(e => e.GetString()!)],
                [.. r.GetProperty("options").EnumerateArray().Select(e => e.GetString()!)],
                r.GetProperty("tls").GetBoolean(), r.GetProperty("helo").GetString() ?? "",
                File.ReadAllBytes(Path.ChangeExtension(json, ".eml"))));
        }
        return list;
    }

    public int Count => Directory.GetFiles(Dir, "*.json").Length;

    public Task<List<Message>> WaitForAsync(int count) =>
        Wait.ForAsync(() => { var m = Messages(); return (m.Count >= count, m); }, TimeSpan.FromSeconds(20), $"{count} messages in the sink");

    public string Output => _proc.Output;

    public ValueTask DisposeAsync() => _proc.DisposeAsync();
}

/// <summary>A raw SMTP client over a socket: exact bytes out, whole replies in (for garbage and smuggling tests).</summary>
public sealed class RawSmtp : IAsyncDisposable
{
    readonly System.Net.Sockets.TcpClient _tcp = new();
    Stream _s = null!;
    readonly List<byte> _buf = [];

    public static async Task<RawSmtp> ConnectAsync(int port)
    {
        var c = new RawSmtp();
        await c._tcp.ConnectAsync(System.Net.IPAddress.Loopback, port);
        c._s = c._tcp.GetStream();
        return c;
    }

    public Stream Stream => _s;

    /// <summary>Switches to TLS (after a 220 to STARTTLS); anything buffered is dropped, as a client must.</summary>
    public async Task StartTlsAsync()
    {
        var ssl = new System.Net.Security.SslStream(_s, false, (_, _, _, _) => true);
        await ssl.AuthenticateAsClientAsync("localhost");
        _s = ssl;
        _buf.Clear();
    }

    public Task SendAsync(string text) => SendAsync(Encoding.UTF8.GetBytes(text));

    public async Task SendAsync(byte[] bytes)
    {
        await _s.WriteAsync(bytes);
        await _s.FlushAsync();
    }

    /// <summary>Reads one whole reply ("250-a", "250 b"); returns "CODE first-line-text"..., or null at EOF.</summary>
    public async Task<string?> ReplyAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        var lines = new List<string>();
        var chunk = new byte[4096];
        while (true)
        {
            int nl;
            while ((nl = _buf.IndexOf((byte)'\n')) >= 0)
            {
                var line = Encoding.UTF8.GetString([.. _buf.Take(nl)]).TrimEnd('\r');
                _buf.RemoveRange(0, nl + 1);
                lines.Add(line);
                if (line.Length < 4 || line[3] != '-') return string.Join("\n", lines);
            }
            int n;
            try { n = await _s.ReadAsync(chunk, cts.Token); }
            catch (IOException) { n = 0; }
            if (n == 0) return lines.Count > 0 ? string.Join("\n", lines) : null;
            _buf.AddRange(chunk.AsSpan(0, n).ToArray());
        }
    }

    public async Task<string> CommandAsync(string line)
    {
        await SendAsync(line + "\r\n");
        return await ReplyAsync() ?? "(closed)";
    }

    public async ValueTask DisposeAsync()
    {
        await _s.DisposeAsync();
        _tcp.Dispose();
    }
}
