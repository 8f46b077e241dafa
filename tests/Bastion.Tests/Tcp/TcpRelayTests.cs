using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Tcp;

public class TcpRelayTests
{
    const string Policy = """
        policies:
          db:
            default: deny
            rules:
              - deny: { source: 10.6.0.0/16 }
                name: blocked-net
                reason: blocked network
              - allow: { source: [127.0.0.1, 10.0.0.0/8] }
                name: local
          nobody:
            default: deny
            rules:
              - deny: { source: 127.0.0.0/8 }
                name: no-loopback
                reason: loopback may not connect
        """;

    static Task<TestGateway> Gateway(string listeners, string extra = "") =>
        TestGateway.StartAsync($"""
            listeners:
            {listeners}
            {extra}
            {Policy}
            """);

    static string Listener(string name, string upstream, string more = "", string policy = "db") => $"""
          - name: {name}
            type: tcp
            listen: 127.0.0.1:0
            upstream: "{upstream}"
            policy: {policy}
        {more}

        """;

    [Fact]
    public async Task Carries_100_MiB_each_way_intact()
    {
        await using var echo = TcpServer.Echo();
        await using var gw = await Gateway(Listener("tcp", $"127.0.0.1:{echo.Port}"));
        const int block = 1 << 20, blocks = 100;
        var data = new byte[block];
        new Random(42).NextBytes(data);
        using var s = await Sock.ConnectAsync(gw.Port("tcp"));
        using var sent = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var reader = Task.Run(async () =>
        {
            using var h = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buf = new byte[256 * 1024];
            long total = 0;
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
            int n;
            while ((n = await s.ReceiveAsync(buf, SocketFlags.None, cts.Token)) > 0)
            {
                h.AppendData(buf, 0, n);
                total += n;
            }
            return (Convert.ToHexStringLower(h.GetHashAndReset()), total);
        });
        for (int i = 0; i < blocks; i++)
        {
            BitConverter.TryWriteBytes(data, i); // every block differs
            sent.AppendData(data);
            await s.SendAsync(data, SocketFlags.None);
        }
        s.Shutdown(SocketShutdown.Send);
        var (hash, total) = await reader;
        Assert.Equal((long)block * blocks, total);
        Assert.Equal(Convert.ToHexStringLower(sent.GetHashAndReset()), hash);
        var conn = await gw.WaitForLogAsync(l => l.Str("event") == "connection");
        Assert.Equal(((long)block * blocks, (long)block * blocks), (conn.Num("bytes_in"), conn.Num("bytes_out")));
        Assert.Equal($"TCP 127.0.0.1:{echo.Port}", conn.Str("request"));
    }

    [Fact]
    public async Task Half_close_client_still_receives_the_rest()
    {
        await using var sink = TcpServer.HashSink();
        await using var gw = await Gateway(Listener("tcp", $"127.0.0.1:{sink.Port}"));
        using var s = await Sock.ConnectAsync(gw.Port("tcp"));
        var payload = Enumerable.Range(0, 1 << 20).Select(i => (byte)(i * 31)).ToArray();
        await s.SendAsync(payload);
        // The sink answers only once it has seen our end of stream: this needs the FIN to cross the gateway
        // while the other direction stays open.
        s.Shutdown(SocketShutdown.Send);
        var answer = Encoding.ASCII.GetString(await s.ReadToEndAsync()).Trim();
        Assert.Equal($"{Convert.ToHexStringLower(SHA256.HashData(payload))} {payload.Length}", answer);
    }

    [Fact]
    public async Task Sends_proxy_protocol_v1_and_v2_to_the_upstream()
    {
        await using var capture = TcpServer.Capture();
        await using var gw = await Gateway(
            Listener("v1", $"127.0.0.1:{capture.Port}", "    proxy_protocol: v1") +
            Listener("v2", $"127.0.0.1:{capture.Port}", "    proxy_protocol: v2"));
        foreach (var (name, version) in new[] { ("v1", 1), ("v2", 2) })
        {
            using var s = await Sock.ConnectAsync(gw.Port(name));
            var me = (IPEndPoint)s.LocalEndPoint!;
            await s.SendAsync("hello"u8.ToArray());
            s.Shutdown(SocketShutdown.Send);
            await s.ReadToEndAsync();
            var bytes = await Wait.ForAsync(() => (capture.Captured.TryDequeue(out var b), b), TimeSpan.FromSeconds(10), "captured connection");
            Assert.Equal(ProxyParseStatus.Parsed, ProxyProtocol.TryParse(bytes!, out var h, out var err));
            Assert.Equal(version, h!.Version);
            Assert.Equal(me, h.Source);
            Assert.Equal(new IPEndPoint(IPAddress.Loopback, gw.Port(name)), h.Destination);
            Assert.Equal("hello", Encoding.ASCII.GetString(bytes!.AsSpan(h.Length)));
        }
        // The v1 header is the text the spec shows.
        using (var s = await Sock.ConnectAsync(gw.Port("v1")))
        {
            var me = (IPEndPoint)s.LocalEndPoint!;
            s.Shutdown(SocketShutdown.Send);
            await s.ReadToEndAsync();
            var bytes = await Wait.ForAsync(() => (capture.Captured.TryDequeue(out var b), b), TimeSpan.FromSeconds(10), "captured connection");
            Assert.Equal($"PROXY TCP4 127.0.0.1 127.0.0.1 {me.Port} {gw.Port("v1")}\r\n", Encoding.ASCII.GetString(bytes!));
        }
    }

    [Fact]
    public async Task Accepted_proxy_header_drives_policy_logs_and_the_header_sent_on()
    {
        await using var capture = TcpServer.Capture();
        await using var gw = await Gateway(Listener("front", $"127.0.0.1:{capture.Port}", """
                proxy_protocol: v2
                accept_proxy_protocol: [127.0.0.1/32]
                limits: { header_timeout: 1s }
            """));
        int port = gw.Port("front");

        // v1 from the trusted front naming 10.1.2.3: allowed by 'local', and passed on as v2.
        using (var s = await Sock.ConnectAsync(port))
        {
            await s.SendAsync(Encoding.ASCII.GetBytes($"PROXY TCP4 10.1.2.3 127.0.0.1 5555 {port}\r\nhello"));
            s.Shutdown(SocketShutdown.Send);
            await s.ReadToEndAsync();
            var bytes = await Wait.ForAsync(() => (capture.Captured.TryDequeue(out var b), b), TimeSpan.FromSeconds(10), "captured connection");
            Assert.Equal(ProxyParseStatus.Parsed, ProxyProtocol.TryParse(bytes!, out var h, out _));
            Assert.Equal(new IPEndPoint(IPAddress.Parse("10.1.2.3"), 5555), h!.Source);
            Assert.Equal("hello", Encoding.ASCII.GetString(bytes!.AsSpan(h.Length)));
            var e = await gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Str("client") == "10.1.2.3:5555");
            Assert.Equal(("allow", "local"), (e.Str("verdict"), e.Str("rule")));
        }
        // v2 (binary) naming 10.6.7.8: the policy denies that network and the upstream never hears of it.
        using (var s = await Sock.ConnectAsync(port))
        {
            await s.SendAsync(ProxyProtocol.BuildV2(new IPEndPoint(IPAddress.Parse("10.6.7.8"), 4444), new IPEndPoint(IPAddress.Loopback, port)));
            Assert.Empty(await s.ReadToEndAsync());
            var e = await gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Str("client") == "10.6.7.8:4444");
            Assert.Equal(("deny", "blocked-net", "blocked network"), (e.Str("verdict"), e.Str("rule"), e.Str("reason")));
        }
        // No header from a front that must send one: closed, logged.
        using (var s = await Sock.ConnectAsync(port))
        {
            await s.SendAsync("GET / HTTP/1.1\r\n\r\n"u8.ToArray());
            Assert.Empty(await s.ReadToEndAsync());
            var e = await gw.WaitForLogAsync(l => l.Str("rule") == "accept_proxy_protocol");
            Assert.Equal("deny", e.Str("verdict"));
        }
        // Silence: the header timeout closes it.
        using (var s = await Sock.ConnectAsync(port))
        {
            Assert.Empty(await s.ReadToEndAsync());
            await gw.WaitForLogAsync(l => l.Str("reason") == "no PROXY header in time");
        }
        Assert.Equal(1, capture.Accepted);
    }

    [Fact]
    public async Task Source_policy_closes_the_connection()
    {
        await using var capture = TcpServer.Capture();
        await using var gw = await Gateway(Listener("closed", $"127.0.0.1:{capture.Port}", policy: "nobody"));
        // A python client, as an operator would test it: connect, send, see the close.
        var py = await Proc.RunAsync("/usr/bin/python3", ["-c", $$"""
            import socket
            s = socket.create_connection(("127.0.0.1", {{gw.Port("closed")}}))
            s.settimeout(10)
            try:
                s.sendall(b"hello")
                print("closed" if s.recv(10) == b"" else "data")
            except ConnectionResetError:
                print("closed")
            """]);
        Assert.Equal("closed", py.Stdout.Trim());
        var e = await gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Str("verdict") == "deny");
        Assert.Equal(("no-loopback", "loopback may not connect"), (e.Str("rule"), e.Str("reason")));
        Assert.Equal(0, capture.Accepted);
    }

    [Fact]
    public async Task Upstream_group_skips_a_dead_target()
    {
        await using var echo = TcpServer.Echo();
        int dead = Wait.FreePort();
        await using var gw = await Gateway(Listener("grp", "pool"), $"""
            upstreams:
              pool:
                targets: ["127.0.0.1:{dead}", "tcp://127.0.0.1:{echo.Port}"]
            """);
        for (int i = 0; i < 4; i++)
        {
            using var s = await Sock.ConnectAsync(gw.Port("grp"));
            await s.SendAsync([(byte)i]);
            s.Shutdown(SocketShutdown.Send);
            Assert.Equal(new[] { (byte)i }, await s.ReadToEndAsync());
        }
        Assert.Equal(4, echo.Accepted);
        await Wait.UntilAsync(() => gw.LogLines().Count(l => l.Str("event") == "connection" && l.Str("request") == $"TCP 127.0.0.1:{echo.Port}") == 4,
            TimeSpan.FromSeconds(10), "4 connection lines");
    }

    [Fact]
    public async Task Idle_timeout_closes_a_silent_relay()
    {
        await using var echo = TcpServer.Echo();
        await using var gw = await Gateway(Listener("idle", $"127.0.0.1:{echo.Port}", "    limits: { idle_timeout: 1s }"));
        using var s = await Sock.ConnectAsync(gw.Port("idle"));
        await s.SendAsync("x"u8.ToArray());
        Assert.Equal("x"u8.ToArray(), await s.ReadToEndAsync(TimeSpan.FromSeconds(15)));
        var e = await gw.WaitForLogAsync(l => l.Str("event") == "connection");
        Assert.Equal("idle timeout", e.Str("reason"));
        Assert.Equal((1L, 1L), (e.Num("bytes_in"), e.Num("bytes_out")));
    }

    [Fact]
    public async Task Hundred_parallel_sessions()
    {
        await using var echo = TcpServer.Echo();
        await using var gw = await Gateway(Listener("tcp", $"127.0.0.1:{echo.Port}"));
        await Task.WhenAll(Enumerable.Range(0, 100).Select(async i =>
        {
            using var s = await Sock.ConnectAsync(gw.Port("tcp"));
            var payload = Enumerable.Range(0, 16 * 1024).Select(k => (byte)(k + i)).ToArray();
            await s.SendAsync(payload);
            s.Shutdown(SocketShutdown.Send);
            Assert.Equal(payload, await s.ReadToEndAsync());
        }));
        Assert.Equal(100, echo.Accepted);
        await Wait.UntilAsync(() => gw.LogLines().Count(l => l.Str("event") == "connection" && l.Num("bytes_out") == 16 * 1024) == 100,
            TimeSpan.FromSeconds(10), "100 connection lines");
    }
}
