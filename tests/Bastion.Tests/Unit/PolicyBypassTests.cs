using System.Net;
using Bastion.Policy;
using Bastion.Gateway;

namespace Bastion.Tests.Unit;

/// <summary>Issue 9 at the policy engine: names converted at load, any line/element of a header, address rules.</summary>
public class PolicyBypassTests
{
    sealed class Lines(params (string Name, string Value)[] hs) : IHeaderSource
    {
        public string? Get(string name)
        {
            var vs = hs.Where(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value).ToList();
            return vs.Count == 0 ? null : string.Join(", ", vs);
        }

        public bool TryGetLine(string name, int index, out string value)
        {
            var vs = hs.Where(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value).ToList();
            value = index < vs.Count ? vs[index] : "";
            return index < vs.Count;
        }
    }

    static CompiledPolicy Compile(string body, string top = "", params (string Name, string Content)[] files)
    {
        var f = new ConfigFixture();
        foreach (var (n, c) in files) f.File(n, c);
        var indented = string.Join("\n", body.Split('\n').Select(l => "    " + l));
        return f.BuildOk($"{top}\npolicies:\n  p:\n{indented}\n").Policies["p"];
    }

    static RequestAttributes Host(string host) => new() { Host = host, Port = 80, Source = IPAddress.Loopback };

    [Fact]
    public void Idn_entries_and_rules_are_converted_at_load()
    {
        var p = Compile("""
            rules:
              - deny: { host: "@books" }
                name: list
              - deny: { host: "*.bücher.example" }
                name: sub
              - deny: { host: "ÄPFEL.test." }
                name: exact
              - allow: {}
            """, "lists:\n  books: [bücher.test]");
        Assert.Equal("list", p.Evaluate(Host("xn--bcher-kva.test")).RuleName);
        Assert.Equal("list", p.Evaluate(Host("a.xn--bcher-kva.test")).RuleName);
        Assert.Equal("sub", p.Evaluate(Host("x.xn--bcher-kva.example")).RuleName);
        Assert.Equal("exact", p.Evaluate(Host("xn--pfel-koa.test")).RuleName);
        Assert.True(p.Evaluate(Host("buecher.test")).Allowed);
    }

    [Fact]
    public void Trailing_dots_do_not_defeat_glob_and_regex_rules()
    {
        var p = Compile("""
            rules:
              - deny: { host: "cdn*.glob.test" }
              - deny: { host: "~^secret[0-9]\\.site\\.test$" }
              - allow: {}
            """);
        Assert.False(p.Evaluate(Host("cdn1.glob.test.")).Allowed);
        Assert.False(p.Evaluate(Host("secret2.site.test.")).Allowed);
        Assert.False(p.Evaluate(Host("CDN1.GLOB.TEST")).Allowed);
        Assert.True(p.Evaluate(Host("cdn1.glob.test.example")).Allowed);
    }

    [Fact]
    public void A_header_condition_matches_any_line_and_any_element()
    {
        var p = Compile("""
            rules:
              - deny: { header: { X-Debug: "1" } }
                name: debug
              - allow: {}
            """);
        RequestAttributes R(params (string, string)[] hs) => new() { Headers = new Lines(hs) };
        Assert.False(p.Evaluate(R(("X-Debug", "1"), ("X-Debug", "1"))).Allowed);
        Assert.False(p.Evaluate(R(("X-Debug", "0"), ("X-Debug", "1"))).Allowed);
        Assert.False(p.Evaluate(R(("X-Debug", "0, 1"))).Allowed);
        Assert.False(p.Evaluate(R(("x-debug", " 1 "))).Allowed);
        Assert.True(p.Evaluate(R(("X-Debug", "0"))).Allowed);
        Assert.True(p.Evaluate(R(("X-Debug", "10"))).Allowed);
        Assert.Equal("X-Debug", p.ConflictingHeader(new Lines(("X-Debug", "0"), ("X-Debug", "1"))));
        Assert.Null(p.ConflictingHeader(new Lines(("X-Debug", "1"), ("X-Debug", " 1"))));
        Assert.Null(p.ConflictingHeader(new Lines(("X-Other", "0"), ("X-Other", "1"))));
    }

    [Fact]
    public void Content_type_is_judged_on_every_media_type()
    {
        var p = Compile("""
            rules:
              - deny: { content_type: "application/x-*" }
              - allow: {}
            """);
        var a = new RequestAttributes();
        foreach (var ct in new[] { "text/plain, application/x-msdownload", "application/x-msdownload; q=1, text/html", "TEXT/PLAIN,APPLICATION/X-SH" })
        {
            a.ContentType = ct;
            Assert.False(p.EvaluateResponse(a).Allowed, ct);
        }
        a.ContentType = "text/plain; charset=utf-8";
        Assert.True(p.EvaluateResponse(a).Allowed);
    }

    [Fact]
    public void Unspecified_and_mapped_spellings_are_judged_as_what_they_reach()
    {
        var p = Compile("""
            rules:
              - deny: { host: 127.0.0.0/8 }
                name: no-loopback
              - deny: { host: "::1" }
                name: no-loopback6
              - allow: {}
            """);
        Assert.Equal("no-loopback", p.Evaluate(Host("0.0.0.0")).RuleName);
        Assert.Equal("no-loopback", p.Evaluate(Host("::ffff:127.0.0.1")).RuleName);
        Assert.Equal("no-loopback6", p.Evaluate(Host("::")).RuleName);
        Assert.True(p.Evaluate(Host("10.0.0.1")).Allowed);
    }

    [Fact]
    public void Every_resolved_address_is_asked_about_by_the_address_rules()
    {
        var p = Compile("""
            rules:
              - allow: { host: 10.9.0.0/16, source: 192.168.0.0/16 }
                name: office-to-lab
              - deny: { host: "@private" }
                name: ssrf
              - allow: { host: "*.example.com" }
                name: web
            """);
        Assert.Equal(2, p.AddressRules.Length);
        var a = Host("evil.example.com");
        Assert.Equal("web", p.Evaluate(a).RuleName);
        // After DNS: a private address is denied by the address rule, a public one keeps the verdict on the name.
        Assert.Equal("ssrf", p.JudgeAddress(a, IPAddress.Parse("127.0.0.1"))!.Value.RuleName);
        Assert.Equal("ssrf", p.JudgeAddress(a, IPAddress.Parse("0.0.0.0"))!.Value.RuleName);
        Assert.Equal("ssrf", p.JudgeAddress(a, IPAddress.Parse("169.254.169.254"))!.Value.RuleName);
        Assert.Equal("ssrf", p.JudgeAddress(a, IPAddress.Parse("fd00:ec2::254"))!.Value.RuleName);
        Assert.Equal("ssrf", p.JudgeAddress(a, IPAddress.Parse("::ffff:10.0.0.1"))!.Value.RuleName);
        Assert.Null(p.JudgeAddress(a, IPAddress.Parse("93.184.216.34")));
        Assert.Null(p.JudgeAddress(a, IPAddress.Parse("2606:2800:220:1::1")));
        Assert.Equal("evil.example.com", a.Host);
        Assert.Null(a.Address);
        // Other conditions of an address rule still apply: the lab is allowed from the office only.
        a.Source = IPAddress.Parse("192.168.1.2");
        Assert.True(p.JudgeAddress(a, IPAddress.Parse("10.9.1.1"))!.Value.Allowed);
        a.Source = IPAddress.Parse("203.0.113.9");
        Assert.False(p.JudgeAddress(a, IPAddress.Parse("10.9.1.1"))!.Value.Allowed);

        // The connector keeps only the allowed addresses, and denies when none is left.
        var mixed = Connector.Judge(p, a, [IPAddress.Parse("127.0.0.1"), IPAddress.Parse("93.184.216.34")]);
        Assert.Equal([IPAddress.Parse("93.184.216.34")], mixed.Allowed);
        var inside = Connector.Judge(p, a, [IPAddress.Parse("127.0.0.1"), IPAddress.Parse("::1")]);
        Assert.False(inside.Ok);
        Assert.Equal("ssrf", inside.Denied!.Value.RuleName);
    }

    [Fact]
    public void A_policy_without_address_rules_judges_no_address()
    {
        var p = Compile("rules:\n  - allow: { host: \"*.example.com\" }\n  - deny: { not: { port: 80 } }");
        Assert.False(p.HasAddressRules);
        Assert.Null(p.JudgeAddress(Host("a.example.com"), IPAddress.Loopback));
        var nested = Compile("rules:\n  - deny: { not: { host: 10.0.0.0/8 } }\n  - allow: {}");
        Assert.True(nested.HasAddressRules);
    }

    [Fact]
    public void Own_list_named_private_replaces_the_builtin_with_a_warning()
    {
        var f = new ConfigFixture();
        var (rt, errors) = f.Build("lists:\n  private: [192.0.2.0/24]\npolicies:\n  p:\n    rules:\n      - deny: { host: \"@private\" }\n");
        Assert.Contains(errors, e => e.IsWarning && e.Message.Contains("replaces the built-in @private"));
        var p = rt!.Policies["p"];
        Assert.Null(p.JudgeAddress(Host("x.test"), IPAddress.Loopback));
        Assert.False(p.JudgeAddress(Host("x.test"), IPAddress.Parse("192.0.2.7"))!.Value.Allowed);
    }

    [Fact]
    public async Task Hosts_file_resolver_answers_without_dns()
    {
        var hosts = Resolver.ParseHostsFile("127.0.0.1 Inside.Test. other.test # c\n::1 inside.test\n# only a comment\nbad line\n", out var problems);
        Assert.Single(problems);
        var r = new Resolver(hosts, systemDns: false);
        var (a, err) = await r.ResolveAsync("inside.test", TimeSpan.FromSeconds(1), default);
        Assert.Equal(System.Net.Sockets.SocketError.Success, err);
        Assert.Equal([IPAddress.Loopback, IPAddress.IPv6Loopback], a);
        Assert.Equal([IPAddress.Loopback, IPAddress.IPv6Loopback], (await r.ResolveAsync("x.localhost", TimeSpan.FromSeconds(1), default)).Addresses);
        // dns: off — a name the file does not hold is not found, and never asked of the system.
        Assert.Equal(System.Net.Sockets.SocketError.HostNotFound, (await r.ResolveAsync("example.com", TimeSpan.FromSeconds(1), default)).Error);
    }

    [Fact]
    public void Normalisation_keys_are_checked()
    {
        var f = new ConfigFixture();
        var (_, errors) = f.Build("""
            listeners:
              - { name: s, type: socks5, listen: 127.0.0.1:0, ambiguous_paths: pass }
              - { name: w, type: http-proxy, listen: 127.0.0.1:0, path_case: upper }
              - { name: t, type: tcp, listen: 127.0.0.1:0, upstream: 127.0.0.1:1, path_case: sensitive }
            """);
        ConfigFixture.HasError(errors, f.Path, 2, 68, "ambiguous_paths is for http-proxy and http-reverse listeners");
        ConfigFixture.HasError(errors, f.Path, 3, 66, "path_case must be insensitive or sensitive, not 'upper'");
        ConfigFixture.HasError(errors, f.Path, 4, 82, "path_case is for http-proxy, http-reverse and ftp listeners");
        var (_, bad) = f.Build("resolver: { hosts: nowhere.txt, dns: maybe }\n");
        Assert.Contains(bad, e => e.Message.Contains("dns must be system or off"));
        Assert.Contains(bad, e => e.Message.Contains("resolver.hosts: cannot read"));
    }
}
