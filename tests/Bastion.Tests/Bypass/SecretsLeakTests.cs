using System.Net;
using System.Text;
using Bastion.Identity;
using Bastion.Tests.Admin;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Bypass;

/// <summary>Issue 9's "Auth and secrets", through the live gateway: logins, the admin API, what /api/config shows.</summary>
public sealed class SecretsLeakTests
{
    static async Task<TestGateway> Gateway(string admin = "admin: { listen: 127.0.0.1:0 }") =>
        await TestGateway.StartAsync($$"""
            {{admin}}
            identity: { users: users.htpasswd }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: out, authenticate: true }
              - { name: site, type: http-reverse, listen: 127.0.0.1:0, policy: out, routes: [{ path: "/{**rest}", upstream: api }] }
            upstreams:
              api: { targets: ["http://svc:s3cret-pw@127.0.0.1:1"] }
            policies:
              out:
                rules:
                  - deny: { header: { Authorization: "Bearer leaked-token" } }
                  - allow: {}
            """, new Dictionary<string, string> { ["users.htpasswd"] = $"alice:{Htpasswd.HashBcrypt("secret", 6)}\n" });

    [Fact]
    public async Task Unknown_users_cost_what_wrong_passwords_cost()
    {
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await Gateway();
        var id = gw.Host.Current.Identity;
        long before = id.HashChecks;
        var known = await Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", gw.Url("web"), "-U", "alice:wrong", $"{origin.Url}/100b");
        Assert.Equal("407", known.Stdout);
        Assert.Equal(before + 1, id.HashChecks);
        var unknown = await Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", gw.Url("web"), "-U", "mallory:wrong", $"{origin.Url}/100b");
        Assert.Equal("407", unknown.Stdout);
        Assert.Equal(before + 2, id.HashChecks);
        var good = await Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "-x", gw.Url("web"), "-U", "alice:secret", $"{origin.Url}/100b");
        Assert.Equal("200", good.Stdout);
    }

    [Fact]
    public async Task A_client_guessing_passwords_is_throttled_and_others_are_not()
    {
        await using var origin = await TestOrigin.StartAsync();
        await using var gw = await Gateway();
        var id = gw.Host.Current.Identity;
        // The guesser on 127.0.0.3 (all of 127/8 is this host), in parallel, each guess a new connection.
        var guesses = Enumerable.Range(0, 24).Select(i => Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.3",
            "-x", gw.Url("web"), "-U", $"alice:guess{i}", $"{origin.Url}/100b")).ToList();
        // A real user elsewhere logs in while the flood runs, with a password not yet in the cache.
        var real = await Proc.CurlAsync("-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "127.0.0.4",
            "-x", gw.Url("web"), "-U", "alice:secret", $"{origin.Url}/100b");
        Assert.Equal("200", real.Stdout);
        foreach (var g in await Task.WhenAll(guesses)) Assert.Equal("407", g.Stdout);
        // The access log writes in batches (20 ms apart): wait for every guess's line before counting.
        await Wait.ForAsync(() => (gw.LogLines().Count(l => l.Str("event") == "request" && (l.Str("client") ?? "").StartsWith("127.0.0.3:", StringComparison.Ordinal)) >= 24, 0),
            TimeSpan.FromSeconds(10), "a log line for each of the 24 guesses");
        var throttled = gw.LogLines().Count(l => (l.Str("reason") ?? "").Contains("too many failed logins"));
        Assert.True(throttled >= 24 - LoginThrottle.Burst - 4, $"{throttled} of 24 guesses throttled");
        // Throttled guesses cost no hash: at most the burst (plus refills) and the real login were hashed.
        Assert.True(id.HashChecks <= LoginThrottle.Burst + 5, $"{id.HashChecks} password hashes");
    }

    [Fact]
    public async Task Api_config_shows_no_userinfo_and_no_credential_patterns()
    {
        await using var gw = await Gateway();
        int admin = gw.Host.Admin!.BoundEndPoint!.Port;
        var (status, body) = await AdminHttp.GetAsync(admin, "/api/config");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.DoesNotContain("s3cret-pw", body);
        Assert.DoesNotContain("leaked-token", body);
        Assert.Contains("http://127.0.0.1:1", body);
        Assert.Contains("(redacted)", body);
    }

    [Fact]
    public async Task Reload_is_post_only_and_needs_a_header_no_form_can_send()
    {
        await using var gw = await Gateway();
        int admin = gw.Host.Admin!.BoundEndPoint!.Port;
        long generation = gw.Host.Current.Generation;
        var get = await AdminHttp.GetAsync(admin, "/api/reload");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.Status);
        // What a cross-site page can send: a simple POST (text/plain form body, no custom header).
        var form = await Raw.ExchangeAsync(admin, "POST /api/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nOrigin: http://evil.example\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx");
        Assert.StartsWith("HTTP/1.1 403", form);
        Assert.Equal(generation, gw.Host.Current.Generation);
        var ok = await Raw.ExchangeAsync(admin, "POST /api/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bastion-Reload: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", ok);
        Assert.Equal(generation + 1, gw.Host.Current.Generation);
    }

    [Fact]
    public async Task Reload_with_a_token_needs_the_token()
    {
        var dir = Scratch.NewDir("tok");
        var tokenFile = Path.Combine(dir, "admin.token");
        await File.WriteAllTextAsync(tokenFile, "t0ken-0123456789abcdef\n");
        await using var gw = await Gateway($"admin: {{ listen: 127.0.0.1:0, token_file: {tokenFile} }}");
        int admin = gw.Host.Admin!.BoundEndPoint!.Port;
        var without = await Raw.ExchangeAsync(admin, "POST /api/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bastion-Reload: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 401", without);
        var with = await Raw.ExchangeAsync(admin, "POST /api/reload HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t0ken-0123456789abcdef\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        Assert.StartsWith("HTTP/1.1 200", with);
    }
}
