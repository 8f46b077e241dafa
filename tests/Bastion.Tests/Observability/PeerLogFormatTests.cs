using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Observability;

/// <summary>
/// `format: squid` next to a real Squid and `format: combined` next to a real Apache httpd (mod_proxy): the same
/// requests through each,
/// and the lines compared field by field (all but times, durations and byte counts, which differ by nature).
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class PeerLogFormatTests : IAsyncLifetime
{
    TestOrigin _origin = null!;

    public async Task InitializeAsync() => _origin = await TestOrigin.StartAsync();

    public async Task DisposeAsync() => await _origin.DisposeAsync();

    static string PeerDir(string name)
    {
        var dir = Scratch.NewDir(name);
        // Squid and nginx's workers run unprivileged.
        File.SetUnixFileMode(dir, (UnixFileMode)0b111_111_111);
        return dir;
    }

    static async Task<string[]> LinesAsync(string path, int count)
    {
        await Wait.UntilAsync(() => File.Exists(path) && File.ReadAllLines(path).Length >= count, TimeSpan.FromSeconds(30), $"{count} line(s) in {path}");
        return File.ReadAllLines(path);
    }

    [Fact]
    public async Task Squid_format_matches_squids_own_lines()
    {
        var dir = PeerDir("squid");
        int squidPort = Wait.FreePort();
        File.WriteAllText(Path.Combine(dir, "squid.conf"), $"""
            http_port 127.0.0.1:{squidPort}
            acl ads dstdomain ads.example.net
            http_access deny ads
            http_access allow localhost
            http_access deny all
            cache deny all
            access_log stdio:{dir}/access.log squid
            cache_store_log none
            cache_log {dir}/cache.log
            pid_filename {dir}/squid.pid
            coredump_dir {dir}
            netdb_filename none
            pinger_enable off
            workers 1
            shutdown_lifetime 1 seconds
            """);
        await using var squid = Proc.Start("squid", ["-N", "-f", Path.Combine(dir, "squid.conf")]);
        await Wait.ForPortAsync(squidPort, TimeSpan.FromSeconds(60));

        var log = Path.Combine(Scratch.NewDir("squidfmt"), "access.log");
        await using var gw = await TestGateway.StartAsync($$"""
            logging: { access: {{log}}, format: squid }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
            policies:
              p:
                default: allow
                rules:
                  - deny: { host: ads.example.net }
            """);

        string[][] requests =
        [
            [$"{_origin.Url}/100b"],
            ["http://ads.example.net/banner.js"],
            ["-p", $"{_origin.Url}/100b"],
        ];
        foreach (var (proxy, path) in new[] { ($"http://127.0.0.1:{squidPort}", Path.Combine(dir, "access.log")), (gw.Url("web"), log) })
        {
            int n = 0;
            foreach (var r in requests)
            {
                await Proc.CurlAsync(["-x", proxy, .. r]);
                await Wait.UntilAsync(() => File.Exists(path) && File.ReadAllLines(path).Count(l => !l.Contains("error:transaction-end", StringComparison.Ordinal)) > n,
                    TimeSpan.FromSeconds(30), $"a line in {path}");
                n++;
            }
        }
        // Squid logs connections that never sent a request (the port probe above); Bastion counts those only with
        // connection lines on.
        var theirs = File.ReadAllLines(Path.Combine(dir, "access.log")).Where(l => !l.Contains("error:transaction-end-before-headers", StringComparison.Ordinal)).ToArray();
        var ours = File.ReadAllLines(log);
        for (int i = 0; i < requests.Length; i++)
        {
            var s = theirs[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var b = ours[i].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(s.Length == 10 && b.Length == 10, $"squid: {theirs[i]}\nbastion: {ours[i]}");
            Assert.Matches(@"^\d{10}\.\d{3}$", b[0]);
            Assert.Matches(@"^\d+$", b[1]);
            Assert.Matches(@"^\d+$", b[4]);
            // client, result code/status, method, URL, user, hierarchy/upstream, media type
            foreach (int f in new[] { 2, 3, 5, 6, 7, 8, 9 })
                Assert.True(s[f] == b[f], $"field {f}: squid wrote '{s[f]}', bastion '{b[f]}'\nsquid:   {theirs[i]}\nbastion: {ours[i]}");
        }
    }

    [Fact]
    public async Task Combined_format_matches_apaches_own_lines()
    {
        var dir = PeerDir("apache");
        int apachePort = Wait.FreePort();
        // Apache's own combined format, as Debian's apache2.conf defines it, in front of the same origin.
        File.WriteAllText(Path.Combine(dir, "httpd.conf"), $$"""
            ServerRoot {{dir}}
            ServerName localhost
            PidFile {{dir}}/httpd.pid
            Listen 127.0.0.1:{{apachePort}}
            LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
            LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
            LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
            LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
            User nobody
            Group nogroup
            ErrorLog {{dir}}/error.log
            LogFormat "%h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\"" combined
            CustomLog {{dir}}/access.log combined
            ProxyPass "/" "http://127.0.0.1:{{_origin.Port}}/"
            """);
        await using var apache = Proc.Start("apache2", ["-f", Path.Combine(dir, "httpd.conf"), "-DFOREGROUND"]);
        await Wait.ForPortAsync(apachePort, TimeSpan.FromSeconds(30));

        var log = Path.Combine(Scratch.NewDir("combined"), "access.log");
        await using var gw = await TestGateway.StartAsync($$"""
            logging: { access: {{log}}, format: combined }
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: p
                routes: [{ path: "/{**rest}", upstream: "http://127.0.0.1:{{_origin.Port}}" }]
            policies:
              p: { rules: [{ allow: {} }] }
            """);

        string[][] requests =
        [
            ["-A", "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" caf\u00e9 back\\slash", "-e", "http://intranet.example/start?a=1", "/100b?x=1&y=%20z"],
            ["-A", "curl/8.5.0", "/status/404"],
            ["-X", "POST", "-d", "hello", "-A", "poster", "/echo"],
        ];
        foreach (var (port, path) in new[] { (apachePort, Path.Combine(dir, "access.log")), (gw.Port("site"), log) })
        {
            int n = 0;
            foreach (var r in requests)
            {
                await Proc.CurlAsync([.. r[..^1], $"http://127.0.0.1:{port}{r[^1]}"]);
                await LinesAsync(path, ++n);
            }
        }
        var theirs = File.ReadAllLines(Path.Combine(dir, "access.log"));
        var ours = File.ReadAllLines(log);
        var combined = new System.Text.RegularExpressions.Regex(@"^(\S+) (\S+) (\S+) \[([^\]]+)\] ""((?:[^""\\]|\\.)*)"" (\d{3}) (\d+|-) ""((?:[^""\\]|\\.)*)"" ""((?:[^""\\]|\\.)*)""$");
        for (int i = 0; i < requests.Length; i++)
        {
            var a = combined.Match(theirs[i]);
            var b = combined.Match(ours[i]);
            Assert.True(a.Success && b.Success, $"apache: {theirs[i]}\nbastion: {ours[i]}");
            Assert.Matches(@"^\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}$", b.Groups[4].Value);
            // host, ident, user, request line, status, referer, user agent (escaped the same way)
            foreach (int g in new[] { 1, 2, 3, 5, 6, 8, 9 })
                Assert.True(a.Groups[g].Value == b.Groups[g].Value, $"field {g}: apache wrote '{a.Groups[g].Value}', bastion '{b.Groups[g].Value}'\napache:  {theirs[i]}\nbastion: {ours[i]}");
        }
    }
}
