using Bastion.Configuration;

namespace Bastion.Tests.Unit;

/// <summary>Typos that `check` used to pass (issue 13): each is now an error at its FILE:LINE:COL, with a suggestion where one is near.</summary>
public sealed class ValidationGapTests
{
    static (ConfigFixture F, List<ConfigError> Errors) Build(string yaml)
    {
        var f = new ConfigFixture();
        var (_, errors) = f.Build(yaml);
        return (f, errors);
    }

    [Fact]
    public void Methods_hosts_and_ports_are_checked_where_they_are_written()
    {
        var (f, errors) = Build("""
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
            policies:
              p:
                rules:
                  - allow: { method: GTE }
                  - allow: { method: "GET /" }
                  - allow: { method: BREW }
                  - allow: { host: "exa mple.com" }
                  - allow: { host: "*.exa_mple..com" }
                  - allow: { port: 0 }
                  - allow: { port: [80, 70000] }
                  - allow: { method: [get, PROPFIND], host: [example.com, "*.example.org", "api-?.example.net", 10.0.0.0/8], port: 1-65535 }
            """);
        ConfigFixture.HasError(errors, f.Path, 6, 26, "method 'GTE' is not an HTTP method (did you mean 'GET'?)");
        ConfigFixture.HasError(errors, f.Path, 7, 26, "method 'GET /' is not an HTTP method token");
        ConfigFixture.HasError(errors, f.Path, 8, 26, "method 'BREW' is not a registered HTTP method", warning: true);
        ConfigFixture.HasError(errors, f.Path, 9, 24, "host: 'exa mple.com' is not a host name");
        ConfigFixture.HasError(errors, f.Path, 10, 24, "host: '*.exa_mple..com' is not '*.' and a host name");
        ConfigFixture.HasError(errors, f.Path, 11, 24, "port: '0' is not a port (1-65535)");
        ConfigFixture.HasError(errors, f.Path, 12, 29, "port: '70000' is not a port (1-65535)");
        Assert.DoesNotContain(errors, e => e.Pos.Line == 13);
        Assert.Equal(6, errors.Count(e => !e.IsWarning));
    }

    [Fact]
    public void Lists_are_checked_by_their_entries_even_when_no_rule_uses_them()
    {
        var (f, errors) = Build("""
            lists:
              nets: [10.0.0.0/33]
              names: [example.com, "*.example.org", ".example.net", "bad name.example"]
              mail: ["a@example.com", "*@example.org", "@example.net"]
              mixed: [192.0.2.1, "2001:db8::/32", example.com]
              blocked: { file: blocked.txt }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
            policies:
              p: { rules: [{ allow: {} }] }
            """);
        ConfigFixture.HasError(errors, f.Path, 2, 9, "list 'nets': 1 entry is neither a host name, an IP/CIDR nor a mail address: '10.0.0.0/33'");
        ConfigFixture.HasError(errors, f.Path, 3, 10, "list 'names': 1 entry is neither");
        Assert.Equal(3, errors.Count(e => !e.IsWarning)); // and the missing blocked.txt

        var g = new ConfigFixture().File("blocked.txt", "# comment\nads.example\n0.0.0.0 tracker.example other.example\n300.1.2.3\nhttp://x.example/\nok.example # trailing\n");
        var (_, fileErrors) = g.Build("""
            lists:
              blocked: { file: blocked.txt }
            listeners:
              - { name: web, type: http-proxy, listen: 127.0.0.1:0, policy: p }
            policies:
              p: { rules: [{ allow: {} }] }
            """);
        ConfigFixture.HasError(fileErrors, g.Path, 2, 20, $"list 'blocked' ({g.Dir}/blocked.txt): 2 entries are neither a host name, an IP/CIDR nor a mail address: '300.1.2.3', 'http://x.example/'");
    }

    [Fact]
    public void Upstream_ports_routes_and_short_tokens()
    {
        var (f, errors) = Build("""
            admin: { listen: 127.0.0.1:0, token_file: admin.token }
            listeners:
              - { name: db, type: tcp, listen: 127.0.0.1:0, upstream: "127.0.0.1:0", policy: p }
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: p
                routes:
                  - { host: "app example.com", upstream: web }
                  - { method: [GTE], upstream: web }
            upstreams:
              web: { targets: ["http://127.0.0.1:0"] }
            policies:
              p: { rules: [{ allow: {} }] }
            """);
        Assert.Contains(errors, e => e.Message.Contains("admin.token_file: cannot read", StringComparison.Ordinal));
        File.WriteAllText(Path.Combine(f.Dir, "admin.token"), "x\n");
        (_, errors) = f.Build(File.ReadAllText(f.Path));
        ConfigFixture.HasError(errors, f.Path, 1, 8, "admin.token_file: the token in");
        ConfigFixture.HasError(errors, f.Path, 1, 8, "has 1 characters; use at least 16");
        ConfigFixture.HasError(errors, f.Path, 3, 59, "upstream '127.0.0.1:0': the port must be 1-65535");
        ConfigFixture.HasError(errors, f.Path, 9, 9, "route host 'app example.com' is not a host name");
        ConfigFixture.HasError(errors, f.Path, 10, 9, "route method 'GTE' is not an HTTP method (did you mean 'GET'?)");
        ConfigFixture.HasError(errors, f.Path, 12, 8, "upstream 'web': target 'http://127.0.0.1:0': the port must be 1-65535");
    }

    [Fact]
    public void Unknown_keys_and_names_suggest_the_nearest_known_one()
    {
        var (f, errors) = Build("""
            listeners:
              - { name: web, type: http-proxi, listen: 127.0.0.1:0, policy: p }
              - { name: web2, type: http-proxy, listen: 127.0.0.1:0, polcy: p, limits: { max_conections: 5 } }
              - { name: web3, type: http-proxy, listen: 127.0.0.1:0, policy: pp }
            lists:
              office: [10.0.0.0/8]
            policies:
              p: { rules: [{ allow: { source: "@ofice", hots: x.example } }] }
            """);
        ConfigFixture.HasError(errors, f.Path, 2, 24, "unknown listener type 'http-proxi' (did you mean 'http-proxy'?)");
        ConfigFixture.HasError(errors, f.Path, 3, 58, "unknown key 'polcy' in listener (did you mean 'policy'?)");
        ConfigFixture.HasError(errors, f.Path, 3, 78, "unknown key 'max_conections' in limits (did you mean 'max_connections'?)");
        ConfigFixture.HasError(errors, f.Path, 4, 66, "unknown policy 'pp' (did you mean 'p'?)");
        ConfigFixture.HasError(errors, f.Path, 8, 45, "unknown key 'hots' in conditions (did you mean 'host'?)");
        ConfigFixture.HasError(errors, f.Path, 8, 35, "unknown list '@ofice' (did you mean 'office'?)");
    }

    [Fact]
    public void Suggestions_stay_within_a_typo()
    {
        Assert.Equal("policy", Suggest.Closest("polcy", ["name", "policy", "limits"]));
        Assert.Equal("GET", Suggest.Closest("GTE", ValueChecks.KnownMethods));
        Assert.Null(Suggest.Closest("colour", ["name", "policy", "limits"]));
        Assert.Null(Suggest.Closest("BREW", ValueChecks.KnownMethods));
    }
}
