using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Tests.Infrastructure;
using Bastion.Tests.Tcp;

namespace Bastion.Tests.Bypass;

/// <summary>
/// Issue 9's "Why", on the forward proxy and SOCKS: each request that walked around the policy on the landed code,
/// through real clients (curl, raw sockets) to real origins, now refused, and `bastion explain` agreeing.
/// </summary>
public sealed class ForwardBypassTests(BypassFixture f) : IClassFixture<BypassFixture>
{
    int Web => f.Gw.Port("web");
    string Lab => $"{BypassFixture.Lab}:{f.Nginx.Port}";

    Task<Http1Response> Get(string listener, string target, params string[] headers) =>
        Http1Response.SendAsync(f.Gw.Port(listener), $"GET {target} HTTP/1.1", ["Host: x", .. headers]);

    [Theory]
    // Forms nginx reads as /admin/...: ambiguous ones are refused, the others are judged decoded.
    [InlineData("//admin/x", 400, "ambiguous")]
    [InlineData("/public/..%2fadmin/x", 400, "ambiguous")]
    [InlineData("/admin%2fx", 400, "ambiguous")]
    [InlineData("/%61dmin/x", 403, "no-admin")]
    [InlineData("/ADMIN/x", 403, "no-admin")]
    [InlineData("/public/%2e%2e/admin/x", 403, "no-admin")]
    // url rules see the URL that is forwarded: an escaped suffix, or one hidden behind a fragment.
    [InlineData("/a.ex%65", 403, "no-exe")]
    [InlineData("/a.exe#.txt", 403, "no-exe")]
    public async Task Paths_a_backend_normalises_cannot_reach_a_denied_area(string path, int status, string why)
    {
        var r = await Get("web", $"http://{Lab}{path}");
        Assert.True(r.Status == status, $"{path}: {r}");
        Assert.DoesNotContain("ADMIN", r.Body);
        Assert.DoesNotContain("EXE", r.Body);
        var line = await f.Gw.WaitForLogAsync(l => l.Str("event") == "request" && l.Str("listener") == "web" && l.Num("status") == status
            && (l.Str("rule") == why || (l.Str("reason") ?? "").Contains(why)) && (l.Str("request") ?? "").Contains(f.Nginx.Port.ToString()));
        Assert.Equal("deny", line.Str("verdict"));
        // explain, given the same request, says the same.
        var (allowed, output) = await f.ExplainAsync("web", "GET", $"http://{Lab}{path}");
        Assert.False(allowed, output);
    }

    [Fact]
    public async Task Allowed_paths_reach_nginx_in_canonical_form()
    {
        var r = await Get("web", $"http://{Lab}/public/./a/../%7Euser/x");
        Assert.Equal(200, r.Status);
        Assert.Equal("OPEN /public/~user/x\n", r.Body);
        Assert.Contains("GET /public/~user/x HTTP/1.1", f.Nginx.AccessLog);
        Assert.True((await f.ExplainAsync("web", "GET", $"http://{Lab}/public/./a/../%7Euser/x")).Allowed);
    }

    [Theory]
    [InlineData("//admin/x")]
    [InlineData("/public/..%2fadmin/x")]
    [InlineData("/admin%2Fx")]
    public async Task Ambiguous_paths_passed_by_the_listener_are_judged_decoded(string path)
    {
        var r = await Get("web-pass", $"http://{Lab}{path}");
        Assert.True(r.Status == 403, r.ToString());
        // A harmless ambiguous path is forwarded as received: nginx decodes it itself.
        var ok = await Get("web-pass", $"http://{Lab}/pub%2Fx");
        Assert.Equal(200, ok.Status);
        Assert.Equal("OPEN /pub/x\n", ok.Body);
    }

    [Fact]
    public async Task A_trailing_dot_does_not_defeat_a_glob_host_rule()
    {
        var r = await Get("web", $"http://cdn1.glob.test.:{f.Nginx.Port}/x");
        Assert.True(r.Status == 403, r.ToString());
        Assert.Contains("no-cdn", r.Body);
        Assert.False((await f.ExplainAsync("web", "GET", $"http://cdn1.glob.test.:{f.Nginx.Port}/x")).Allowed);
        var lab = await Get("web", $"http://lab.test:{f.Nginx.Port}/x");
        Assert.Equal(200, lab.Status);
    }

    [Theory]
    [InlineData("inside.test")]
    [InlineData("localhost")]
    [InlineData("0.0.0.0")]
    [InlineData("0")]
    [InlineData("[::]")]
    [InlineData("127.1")]
    [InlineData("0x7f000001")]
    [InlineData("INSIDE.TEST.")]
    public async Task Names_and_spellings_of_inside_addresses_are_denied_on_get_and_connect(string host)
    {
        int before = f.Inside.Requests;
        var get = await Get("web", $"http://{host}:{f.Inside.Port}/100b");
        Assert.True(get.Status == 403, $"{host}: {get}");
        Assert.Contains("ssrf", get.Body);
        var connect = Http1Response.Parse(await Raw.ExchangeAsync(Web, $"CONNECT {host}:{f.Inside.Port} HTTP/1.1\r\nHost: {host}\r\n\r\n"));
        Assert.True(connect.Status == 403, $"{host}: {connect}");
        Assert.Equal(before, f.Inside.Requests);
        var (allowed, output) = await f.ExplainAsync("web", "GET", $"http://{host}:{f.Inside.Port}/100b");
        Assert.False(allowed, output);
        Assert.Contains("ssrf", output);
        if (host == "localhost") Assert.False((await f.ExplainAsync("web", "CONNECT", $"{host}:{f.Inside.Port}")).Allowed);
    }

    [Fact]
    public async Task Explain_shows_the_resolution_step()
    {
        var (allowed, output) = await f.ExplainAsync("web", "GET", $"http://inside.test:{f.Inside.Port}/");
        Assert.False(allowed);
        Assert.Contains("resolve inside.test -> 127.0.0.1", output);
        Assert.Contains("=> address 127.0.0.1 denied by ssrf", output);
        var lab = await f.ExplainAsync("web", "GET", $"http://lab.test:{f.Nginx.Port}/");
        Assert.True(lab.Allowed, lab.Output);
        Assert.Contains("connects to 127.0.0.2", lab.Output);
        var zero = await f.ExplainAsync("web", "GET", $"http://0:{f.Inside.Port}/");
        Assert.Contains("judged as: host=0.0.0.0", zero.Output);
    }

    [Fact]
    public async Task Curl_through_the_proxy_reaches_the_lab_by_name_but_not_the_inside()
    {
        var proxy = f.Gw.Url("web");
        var ok = await Proc.CurlAsync("-x", proxy, $"http://lab.test:{f.Nginx.Port}/hello");
        Assert.Equal("OPEN /hello\n", ok.Stdout);
        var no = await Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", proxy, $"http://inside.test:{f.Inside.Port}/100b");
        Assert.Equal("403", no.Stdout);
        var tunnel = await Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", proxy, $"http://localhost:{f.Inside.Port}/100b");
        Assert.Equal("403", tunnel.Stdout);
    }

    [Theory]
    [InlineData("X-Debug: 1|X-Debug: 1")]
    [InlineData("X-Debug: 0|X-Debug: 1")]
    [InlineData("X-Debug: 0, 1")]
    public async Task Duplicate_header_lines_cannot_dilute_a_deny(string lines)
    {
        var headers = lines.Split('|');
        var r = await Get("web", $"http://{Lab}/x", headers);
        Assert.True(r.Status == 403, r.ToString());
        Assert.Contains("no-debug", r.Body);
        var (allowed, _) = await f.ExplainAsync("web", ["--header", .. headers.SelectMany(h => new[] { h, "--header" }).SkipLast(1), "GET", $"http://{Lab}/x"]);
        Assert.False(allowed);
    }

    [Fact]
    public async Task Conflicting_lines_of_a_judged_header_are_refused_when_the_listener_says_so()
    {
        var r = await Get("web-strict", $"http://{Lab}/x", "X-Debug: 0", "X-Debug: 2");
        Assert.True(r.Status == 400, r.ToString());
        Assert.Contains("conflicting", r.Body);
        var same = await Get("web-strict", $"http://{Lab}/x", "X-Debug: 0", "X-Debug: 0");
        Assert.Equal(200, same.Status);
        // The same request on a listener without the option is judged (and here allowed).
        Assert.Equal(200, (await Get("web", $"http://{Lab}/x", "X-Debug: 0", "X-Debug: 2")).Status);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_response_is_judged_on_every_media_type(bool twoLines)
    {
        var origin = twoLines ? f.TwoTypes : f.TypeList;
        var r = await Get("web", $"{origin.Url}/setup");
        Assert.True(r.Status == 403, r.ToString());
        Assert.Contains("no-binaries", r.Body);
        Assert.DoesNotContain("MZ", r.Body);
    }

    [Fact]
    public async Task A_response_framed_two_ways_is_refused_and_nothing_is_smuggled()
    {
        // Two pipelined requests: on the landed code the second got the forged response hidden in the first.
        using var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await s.ConnectAsync(IPAddress.Loopback, Web);
        var req = $"GET {f.ClTe.Url}/a HTTP/1.1\r\nHost: x\r\n\r\nGET http://{Lab}/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        await s.SendAsync(Encoding.ASCII.GetBytes(req), SocketFlags.None);
        var all = await Raw.ReadUntilCloseAsync(s, TimeSpan.FromSeconds(10));
        Assert.StartsWith("HTTP/1.1 502", all);
        Assert.Contains("both Content-Length and Transfer-Encoding", all);
        Assert.DoesNotContain("FORGED", all);
        var line = await f.Gw.WaitForLogAsync(l => l.Str("request") == $"GET {f.ClTe.Url}/a");
        Assert.Equal(502, line.Num("status"));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_101_is_never_relayed_by_the_forward_proxy(bool clientAsked)
    {
        // The forward proxy never forwards an upgrade, so any 101 is one the request did not ask for: relaying it
        // would turn the client's connection into a tunnel no rule sees.
        string[] upgrade = clientAsked ? ["Connection: Upgrade", "Upgrade: websocket"] : [];
        var r = await Get("web", $"{f.Unrequested101.Url}/fwd-{clientAsked}", upgrade);
        Assert.True(r.Status == 502, r.ToString());
        var line = await f.Gw.WaitForLogAsync(l => l.Str("request") == $"GET {f.Unrequested101.Url}/fwd-{clientAsked}");
        Assert.Equal(502, line.Num("status"));
        Assert.Contains("101", line.Str("reason"));
        var head = f.Unrequested101.Requests.Last(h => h.Contains($"/fwd-{clientAsked}", StringComparison.Ordinal));
        Assert.DoesNotContain("Upgrade", head, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public async Task Userinfo_never_reaches_the_upstream_or_the_access_log()
    {
        // The HTTP/1.1 codec refuses userinfo in a target outright (stricter than cutting it out): real clients move
        // it to Proxy-Authorization / Authorization themselves.
        var r = await Get("web", $"http://bob:hunter2@{Lab}/userinfo");
        Assert.True(r.Status == 400, r.ToString());
        Assert.Contains("userinfo", r.Body);
        var connect = Http1Response.Parse(await Raw.ExchangeAsync(Web, $"CONNECT bob:hunter2@{Lab} HTTP/1.1\r\nHost: x\r\n\r\n"));
        Assert.Equal(400, connect.Status);
        await f.Gw.WaitForLogAsync(l => l.Str("listener") == "web" && l.Num("status") == 400 && (l.Str("reason") ?? "").Contains("userinfo in the request target")
            && l.Str("request") == "(malformed request)");
        Assert.DoesNotContain("hunter2", f.Nginx.AccessLog);
        Assert.DoesNotContain("hunter2", File.ReadAllText(f.Gw.LogPath));
        // curl, given such a URL, sends the credentials as a header: they reach the origin, never a log line.
        var ok = await Proc.CurlAsync("-s", "-x", f.Gw.Url("web"), $"http://bob:hunter2@{Lab}/userinfo-curl");
        Assert.Equal("OPEN /userinfo-curl\n", ok.Stdout);
        var line = await f.Gw.WaitForLogAsync(l => (l.Str("request") ?? "").EndsWith("/userinfo-curl", StringComparison.Ordinal));
        Assert.Equal($"GET http://{Lab}/userinfo-curl", line.Str("request"));
        Assert.DoesNotContain("hunter2", File.ReadAllText(f.Gw.LogPath));
    }

    [Fact]
    public async Task Socks5_and_socks4a_judge_the_address_a_name_resolves_to()
    {
        int port = f.Gw.Port("socks");
        foreach (var host in new[] { "inside.test", "localhost", "0x7f.1", "INSIDE.test." })
            Assert.True(await SocksClient.ConnectAsync(port, SocksClient.Domain(1, host, f.Inside.Port)) == 2, host);
        Assert.Equal(2, await SocksClient.ConnectAsync(port, SocksClient.V4(1, IPAddress.Any, f.Inside.Port)));
        Assert.Equal(91, await SocksClient.Socks4aAsync(port, "inside.test", f.Inside.Port));
        Assert.Equal(0, await SocksClient.ConnectAsync(port, SocksClient.Domain(1, "lab.test", f.Nginx.Port)));
        Assert.Equal(90, await SocksClient.Socks4aAsync(port, "lab.test", f.Nginx.Port));
        var line = await f.Gw.WaitForLogAsync(l => l.Str("listener") == "socks" && l.Str("request") == $"CONNECT inside.test:{f.Inside.Port}" && l.Str("verdict") == "deny");
        Assert.Equal("ssrf", line.Str("rule"));

        // Real clients: curl resolving through the proxy (socks5h, socks4a).
        var proxy = $"127.0.0.1:{port}";
        Assert.Equal("OPEN /s\n", (await Proc.CurlAsync("--socks5-hostname", proxy, $"http://lab.test:{f.Nginx.Port}/s")).Stdout);
        Assert.NotEqual(0, (await Proc.CurlAsync("--socks5-hostname", proxy, $"http://inside.test:{f.Inside.Port}/100b")).ExitCode);
        Assert.NotEqual(0, (await Proc.CurlAsync("--socks4a", proxy, $"http://localhost:{f.Inside.Port}/100b")).ExitCode);
        Assert.False((await f.ExplainAsync("socks", $"inside.test:{f.Inside.Port}")).Allowed);
        Assert.True((await f.ExplainAsync("socks", $"lab.test:{f.Nginx.Port}")).Allowed);
    }

    [Fact]
    public async Task Udp_datagrams_to_names_of_inside_addresses_are_dropped()
    {
        using var inside = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        using var lab = new UdpClient(new IPEndPoint(IPAddress.Parse(BypassFixture.Lab), 0));
        int insidePort = ((IPEndPoint)inside.Client.LocalEndPoint!).Port, labPort = ((IPEndPoint)lab.Client.LocalEndPoint!).Port;
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        int insideGot = 0;
        var insideTask = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested) { await inside.ReceiveAsync(stop.Token); Interlocked.Increment(ref insideGot); }
        });
        var echo = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested) { var d = await lab.ReceiveAsync(stop.Token); await lab.SendAsync(d.Buffer, d.RemoteEndPoint, stop.Token); }
        });
        using var control = await SocksClient.GreetAsync(f.Gw.Port("socks"));
        await control.SendAsync(SocksClient.V4(3, IPAddress.Any, 0));
        var reply = await control.ReadExactlyAsync(10);
        Assert.Equal(0, reply[1]);
        var relay = new IPEndPoint(new IPAddress(reply.AsSpan(4, 4)), (reply[8] << 8) | reply[9]);
        using var client = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0));
        byte[] Wrap(string host, int port, string payload) =>
            [0, 0, 0, 3, (byte)host.Length, .. Encoding.ASCII.GetBytes(host), (byte)(port >> 8), (byte)port, .. Encoding.ASCII.GetBytes(payload)];
        await client.SendAsync(Wrap("inside.test", insidePort, "secret?"), relay);
        await client.SendAsync(Wrap("localhost", insidePort, "secret?"), relay);
        await client.SendAsync(Wrap("lab.test", labPort, "ping"), relay);
        using var rcts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var got = await client.ReceiveAsync(rcts.Token);
        Assert.EndsWith("ping", Encoding.ASCII.GetString(got.Buffer));
        var denied = await f.Gw.WaitForLogAsync(l => l.Str("request") == $"UDP inside.test:{insidePort}");
        Assert.Equal(("deny", "ssrf"), (denied.Str("verdict"), denied.Str("rule")));
        await f.Gw.WaitForLogAsync(l => l.Str("request") == $"UDP localhost:{insidePort}" && l.Str("verdict") == "deny");
        Assert.Equal(0, Volatile.Read(ref insideGot));
        stop.Cancel();
        await Task.WhenAll(insideTask.ContinueWith(_ => { }), echo.ContinueWith(_ => { }));
    }
}
