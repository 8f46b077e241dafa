using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Ftp;

[CollectionDefinition("ftp")]
public sealed class FtpCollection : ICollectionFixture<FtpFixture>;

/// <summary>curl through the gateway to pyftpdlib: every data mode on both sides, uploads, listings, policy.</summary>
[Collection("ftp")]
public sealed class FtpGatewayTests(FtpFixture f)
{
    static async Task<ProcResult> Curl(params string[] args) => await Proc.CurlAsync(args);

    [Theory]
    [InlineData("plain")]
    [InlineData("active")]
    [InlineData("keep")]
    public async Task Curl_downloads_in_EPSV_PASV_PORT_and_EPRT_modes(string listener)
    {
        var url = f.Url(listener, "/pub/big.bin");
        var dir = Scratch.NewDir("dl");
        string[][] modes = [[], ["--disable-epsv"], ["-P", "-"], ["-P", "-", "--disable-eprt"]];
        for (int i = 0; i < modes.Length; i++)
        {
            var file = Path.Combine(dir, $"{i}.bin");
            var r = await Curl([.. modes[i], "-o", file, url]);
            Assert.True(r.ExitCode == 0, $"{listener} {string.Join(' ', modes[i])}: {r}");
            Assert.Equal(FtpFixture.Sha(f.Big), FtpFixture.Sha(await File.ReadAllBytesAsync(file)));
        }
        // One access-log event per transfer: command, path, bytes, upstream reply code.
        var line = await f.Gateway.WaitForLogAsync(l => l.Str("event") == "transfer" && l.Str("listener") == listener
            && l.Str("request") == "RETR /pub/big.bin" && l.Num("bytes_out") == f.Big.Length);
        Assert.Equal(226, line.Num("status"));
        Assert.Equal("allow", line.Str("verdict"));
        Assert.Equal("alice", line.Str("user"));
    }

    [Fact]
    public async Task Uploads_arrive_byte_for_byte()
    {
        var src = Path.Combine(Scratch.NewDir("up"), "src.bin");
        await File.WriteAllBytesAsync(src, f.Big);
        var r = await Curl("-T", src, f.Url("plain", "/up/curl-epsv.bin"));
        Assert.True(r.ExitCode == 0, r.ToString());
        r = await Curl("-P", "-", "-T", src, f.Url("active", "/up/curl-port.bin"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal(FtpFixture.Sha(f.Big), FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(f.Root, "up", "curl-epsv.bin"))));
        Assert.Equal(FtpFixture.Sha(f.Big), FtpFixture.Sha(await File.ReadAllBytesAsync(Path.Combine(f.Root, "up", "curl-port.bin"))));
        var line = await f.Gateway.WaitForLogAsync(l => l.Str("event") == "transfer" && l.Str("request") == "STOR /up/curl-epsv.bin");
        Assert.Equal(f.Big.Length, line.Num("bytes_in"));
        Assert.Equal(226, line.Num("status"));
    }

    [Fact]
    public async Task Listings_LIST_NLST_and_MLSD()
    {
        var r = await Curl(f.Url("plain", "/pub/tree/"));
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains("x.txt", r.Stdout);
        Assert.Contains("sub", r.Stdout);
        r = await Curl("-l", f.Url("plain", "/pub/tree/"));
        Assert.Equal(["sub", "x.txt"], r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(s => s.TrimEnd('\r')).Order());
        var py = await Proc.RunAsync("/usr/bin/python3", ["-c", $$"""
            import ftplib
            f = ftplib.FTP(timeout=10); f.connect('127.0.0.1', {{f.Port("plain")}}); f.login('alice', 'secret')
            print(sorted(n for n, facts in f.mlsd('/pub/tree') if facts['type'] in ('file', 'dir')))
            f.quit()
            """]);
        Assert.True(py.ExitCode == 0, py.ToString());
        Assert.Equal("['sub', 'x.txt']", py.Stdout.Trim());
    }

    [Fact]
    public async Task A_denied_STOR_leaves_nothing_and_a_denied_DELE_leaves_the_file()
    {
        var src = Path.Combine(Scratch.NewDir("up"), "src.txt");
        await File.WriteAllTextAsync(src, "should not arrive");
        var r = await Curl("-T", src, f.Url("plain", "/ro/new.txt"));
        Assert.Equal(25, r.ExitCode); // curl: upload failed (550)
        Assert.False(File.Exists(Path.Combine(f.Root, "ro", "new.txt")));
        var deny = await f.Gateway.WaitForLogAsync(l => l.Str("request") == "STOR /ro/new.txt");
        Assert.Equal("deny", deny.Str("verdict"));
        Assert.Equal("files#1", deny.Str("rule"));
        Assert.Equal(550, deny.Num("status"));

        r = await Curl("-Q", "DELE /pub/a.txt", f.Url("plain", "/"));
        Assert.NotEqual(0, r.ExitCode);
        Assert.True(File.Exists(Path.Combine(f.Root, "pub", "a.txt")));
        deny = await f.Gateway.WaitForLogAsync(l => l.Str("request") == "DELE /pub/a.txt");
        Assert.Equal("pub is kept", deny.Str("reason"));
    }

    [Fact]
    public async Task Relative_and_dot_dot_paths_are_judged_resolved()
    {
        await using var c = await FtpControl.ConnectAsync(f.Port("plain"));
        await c.LoginAsync();
        Assert.Equal(250, (await c.CommandAsync("CWD ro")).Code);
        var (code, text) = await c.CommandAsync("DELE keep.txt");
        Assert.Equal(550, code);
        Assert.StartsWith("550 /ro/keep.txt: denied by policy: read-only area", text);
        Assert.Equal(250, (await c.CommandAsync("CWD /pub")).Code);
        (code, text) = await c.CommandAsync("RNFR ../ro/keep.txt");
        Assert.Equal(550, code);
        Assert.Contains("/ro/keep.txt", text);
        (code, _) = await c.CommandAsync("CWD /pub/../ro/./");
        Assert.Equal(250, code);
        (code, text) = await c.CommandAsync("PWD");
        Assert.Equal(257, code);
        Assert.Contains("\"/ro\"", text);
        (code, text) = await c.CommandAsync("MKD x//y/..");
        Assert.Equal(550, code);
        Assert.Contains("/ro/x:", text);
        // RFC 775's X-form is the same verb to the policy.
        (code, text) = await c.CommandAsync("XMKD /ro/new");
        Assert.Equal(550, code);
        Assert.Contains("/ro/new: denied by policy", text);
        (code, text) = await c.CommandAsync("DELE ../../../../ro/keep.txt");
        Assert.Equal(550, code);
        Assert.True(File.Exists(Path.Combine(f.Root, "ro", "keep.txt")));
        // A path the gateway cannot judge unambiguously is refused, and the session goes on.
        Assert.Equal(501, (await c.CommandAsync("CWD a\\..\\..")).Code);
        Assert.Equal(200, (await c.CommandAsync("NOOP")).Code);
    }

    [Fact]
    public async Task A_server_named_at_login_is_asked_about_before_connecting()
    {
        var r = await Curl($"ftp://alice%40127.0.0.1%3A{f.Plain.Port}:secret@127.0.0.1:{f.Port("named")}/pub/a.txt");
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("hello\n", r.Stdout);

        await using var c = await FtpControl.ConnectAsync(f.Port("named"));
        // No server yet: FEAT and NOOP are the gateway's.
        var (code, text) = await c.CommandAsync("FEAT");
        Assert.Equal(211, code);
        Assert.Contains(" EPSV", text);
        var (deniedCode, denied) = await c.CommandAsync($"USER bob@127.0.0.1:{f.Tls.Port}");
        Assert.Equal(530, deniedCode);
        Assert.Contains("server not allowed", denied);
        Assert.Equal(530, (await c.CommandAsync("USER bob")).Code);
        Assert.Equal(331, (await c.CommandAsync($"USER alice@127.0.0.1:{f.Plain.Port}")).Code);
        Assert.Equal(230, (await c.CommandAsync("PASS secret")).Code);
        Assert.Equal(213, (await c.CommandAsync("MDTM /pub/a.txt")).Code);
    }

    [Fact]
    public async Task An_upstream_group_fails_over_to_a_target_that_answers()
    {
        for (int i = 0; i < 3; i++)
        {
            var r = await Curl(f.Url("group", "/pub/a.txt"));
            Assert.True(r.ExitCode == 0, r.ToString());
            Assert.Equal("hello\n", r.Stdout);
        }
        var line = await f.Gateway.WaitForLogAsync(l => l.Str("listener") == "group" && l.Str("event") == "connection");
        Assert.Equal($"FTP {f.Plain.Endpoint}", line.Str("request"));
    }

    [Fact]
    public async Task Feat_is_filtered_and_unsupported_commands_are_refused()
    {
        await using var c = await FtpControl.ConnectAsync(f.Port("plain"));
        var (code, text) = await c.CommandAsync("FEAT");
        Assert.Equal(211, code);
        Assert.Contains(" MLST ", text);
        Assert.Contains(" SIZE", text);
        Assert.Contains(" EPRT", text);
        Assert.DoesNotContain("AUTH", text); // no certificate on this listener
        await c.LoginAsync();
        Assert.Equal(504, (await c.CommandAsync("MODE Z")).Code);
        Assert.Equal(502, (await c.CommandAsync("REIN")).Code);
        Assert.Equal(502, (await c.CommandAsync("AUTH TLS")).Code);
        Assert.Equal(550, (await c.CommandAsync("SITE CHMOD 777 /pub/a.txt")).Code);
        Assert.Equal(500, (await c.CommandAsync("XYZZY")).Code);
        Assert.Equal(501, (await c.CommandAsync("REST abc")).Code);
        Assert.Equal(501, (await c.CommandAsync("TYPE Q")).Code);
        Assert.Equal(503, (await c.CommandAsync("RNTO /up/x")).Code);
        Assert.Equal(425, (await c.CommandAsync("RETR /pub/a.txt")).Code);
        Assert.Equal(200, (await c.CommandAsync("NOOP")).Code);
    }

    [Fact]
    public async Task Lines_over_the_limit_are_refused_without_ending_the_session()
    {
        await using var c = await FtpControl.ConnectAsync(f.Port("short"));
        var (code, text) = await c.CommandAsync("NOOP " + new string('x', 300));
        Assert.Equal(500, code);
        Assert.Contains("too long", text);
        await c.LoginAsync();
        Assert.Equal(257, (await c.CommandAsync("PWD")).Code);
        var line = await f.Gateway.WaitForLogAsync(l => l.Str("listener") == "short" && l.Str("request") == "(line too long)");
        Assert.Equal("protocol", line.Str("rule"));
    }

    [Fact]
    public async Task Explain_takes_an_FTP_command_with_a_user()
    {
        var r = await Proc.BastionAsync(["explain", "-c", f.Gateway.ConfigPath, "--listener", "plain", "--user", "alice", "STOR", "/ro/../ro/f"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("verdict: deny (rule files#1: read-only area)", r.Stdout);
        r = await Proc.BastionAsync(["explain", "-c", f.Gateway.ConfigPath, "--listener", "plain", "--user", "alice", "STOR /up/f"]);
        Assert.Equal(0, r.ExitCode);
        r = await Proc.BastionAsync(["explain", "-c", f.Gateway.ConfigPath, "--listener", "named", $"USER bob@127.0.0.1:{f.Tls.Port}"]);
        Assert.Equal(1, r.ExitCode);
        Assert.Contains("server not allowed", r.Stdout);
    }

    [Fact]
    public async Task Explain_agrees_with_the_live_session()
    {
        await using var c = await FtpControl.ConnectAsync(f.Port("plain"));
        await c.LoginAsync();
        await using var n = await FtpControl.ConnectAsync(f.Port("named"));
        // (what the live client sends, what `explain` is given, the log line's request)
        (FtpControl Client, string Listener, string[] Live, string Explain, string Logged)[] cases =
        [
            (c, "plain", ["CWD /ro", "STOR x.txt"], "STOR /ro/x.txt", "STOR /ro/x.txt"),
            (c, "plain", ["DELE ../pub/a.txt"], "DELE /pub/a.txt", "DELE /pub/a.txt"),
            (c, "plain", ["SITE CHMOD 600 a.txt"], "SITE CHMOD 600 a.txt", "SITE CHMOD 600 a.txt"),
            (c, "plain", ["CWD /", "MDTM pub/a.txt"], "MDTM /pub/a.txt", "MDTM /pub/a.txt"),
            (n, "named", [$"USER bob@127.0.0.1:{f.Tls.Port}"], $"USER bob@127.0.0.1:{f.Tls.Port}", $"USER bob@127.0.0.1:{f.Tls.Port}"),
            (n, "named", [$"USER alice@127.0.0.1:{f.Plain.Port}"], $"USER alice@127.0.0.1:{f.Plain.Port}", $"USER alice@127.0.0.1:{f.Plain.Port}"),
        ];
        var rt = f.Gateway.Host.Current;
        foreach (var (client, listener, live, explain, logged) in cases)
        {
            int before = f.Gateway.LogLines().Count(l => l.Str("request") == logged && l.Str("listener") == listener);
            foreach (var cmd in live) await client.CommandAsync(cmd);
            var line = await Wait.ForAsync(() =>
            {
                var m = f.Gateway.LogLines().Where(l => l.Str("request") == logged && l.Str("listener") == listener).ToList();
                return (m.Count > before, m.LastOrDefault());
            }, TimeSpan.FromSeconds(30), logged);
            var d = Bastion.Cli.Explain.Judge(rt, rt.Listener(listener)!, explain,
                new Bastion.Policy.RequestAttributes { Source = System.Net.IPAddress.Loopback, User = line.Str("user") });
            Assert.True((d.VerdictText, d.RuleName) == (line.Str("verdict"), line.Str("rule")),
                $"{explain}: explain ({d.VerdictText}, {d.RuleName}), live ({line.Str("verdict")}, {line.Str("rule")})");
        }
    }

    [Fact]
    public async Task Metrics_count_ftp_decisions_and_bytes()
    {
        var before = f.Gateway.Host.Metrics.Counters("plain");
        var r = await Curl(f.Url("plain", "/pub/big.bin"), "-o", "/dev/null");
        Assert.True(r.ExitCode == 0, r.ToString());
        var after = f.Gateway.Host.Metrics.Counters("plain");
        Assert.True(after.Allowed - before.Allowed >= 5, $"{before} -> {after}"); // USER, PASS, PWD, EPSV, TYPE, SIZE, RETR...
        Assert.True(after.BytesOut - before.BytesOut >= f.Big.Length, $"{before} -> {after}");
        Assert.True(after.Accepted - before.Accepted >= 1);
    }
}
