using System.Net;
using Bastion.Configuration;
using Bastion.Policy;

namespace Bastion.Tests.Unit;

/// <summary>Every condition of SPEC 2.1, first match, default, the two moments, rule names.</summary>
public class PolicyTests
{
    sealed class Headers(params (string Name, string Value)[] hs) : IHeaderSource
    {
        public string? Get(string name)
        {
            foreach (var (n, v) in hs)
                if (string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) return v;
            return null;
        }
    }

    /// <summary>Compiles `policies: p:` from the given body (indented under p), with optional extra top-level YAML.</summary>
    static CompiledPolicy Compile(string body, string top = "", params (string Name, string Content)[] files)
    {
        var f = new ConfigFixture();
        foreach (var (n, c) in files) f.File(n, c);
        var indented = string.Join("\n", body.Split('\n').Select(l => "    " + l));
        var rt = f.BuildOk($"{top}\npolicies:\n  p:\n{indented}\n");
        return rt.Policies["p"];
    }

    static RequestAttributes Req(string? host = null, int port = -1, string? method = null, string? path = null,
        string? source = null, string? user = null, string? url = null, IHeaderSource? headers = null,
        string? command = null, string? mailFrom = null, string[]? rcptTo = null, long size = -1,
        string? contentType = null, DateTime? time = null, string? sni = null) => new()
        {
            Host = host,
            Port = port,
            Method = method,
            Path = path,
            Source = source is null ? null : IPAddress.Parse(source),
            User = user,
            Url = url,
            Headers = headers,
            Command = command,
            MailFrom = mailFrom,
            RcptTo = rcptTo,
            Size = size,
            ContentType = contentType,
            Time = time,
            Sni = sni,
        };

    static bool Allows(CompiledPolicy p, RequestAttributes a) => p.Evaluate(a).Allowed;

    [Fact]
    public void Default_is_deny_unless_said_and_empty_map_matches_everything()
    {
        var deny = Compile("rules: []");
        var d = deny.Evaluate(Req(host: "a.com"));
        Assert.False(d.Allowed);
        Assert.Equal("p#default", d.RuleName);
        Assert.Equal("no rule allows it", d.Reason);

        var allow = Compile("default: allow\nrules: []");
        Assert.True(Allows(allow, Req()));

        var all = Compile("rules:\n  - allow: {}");
        Assert.True(Allows(all, new RequestAttributes()));
    }

    [Fact]
    public void First_match_wins_and_rules_are_named_policy_index()
    {
        var p = Compile("""
            rules:
              - deny: { host: evil.com }
                reason: blocked domain
              - allow: { host: [evil.com, good.com] }
              - name: late
                deny: { host: good.com }
            """);
        var d1 = p.Evaluate(Req(host: "evil.com"));
        Assert.Equal((Verdict.Deny, "p#1", "blocked domain"), (d1.Verdict, d1.RuleName, d1.Reason));
        var d2 = p.Evaluate(Req(host: "good.com"));
        Assert.Equal((Verdict.Allow, "p#2"), (d2.Verdict, d2.RuleName));
        Assert.Equal("late", p.AllRules[2].Name);
        Assert.Equal("p#default", p.Evaluate(Req(host: "other.com")).RuleName);
    }

    [Fact]
    public void Every_condition_in_a_rule_must_match_any_item_of_a_list()
    {
        var p = Compile("rules:\n  - allow: { host: a.com, port: [80, 443], method: [GET, HEAD] }");
        Assert.True(Allows(p, Req(host: "a.com", port: 443, method: "GET")));
        Assert.True(Allows(p, Req(host: "a.com", port: 80, method: "head")));
        Assert.False(Allows(p, Req(host: "a.com", port: 8080, method: "GET")));
        Assert.False(Allows(p, Req(host: "a.com", port: 80, method: "POST")));
        Assert.False(Allows(p, Req(host: "b.com", port: 80, method: "GET")));
    }

    [Fact]
    public void Missing_attributes_never_match()
    {
        var p = Compile("""
            default: allow
            rules:
              - deny: { user: alice }
              - deny: { host: a.com }
              - deny: { port: 1-65535 }
              - deny: { source: 0.0.0.0/0 }
              - deny: { header: { X-A: "*" } }
              - deny: { method: GET }
              - deny: { path: "/**" }
            """);
        Assert.True(Allows(p, new RequestAttributes()));
    }

    [Fact]
    public void Source_cidrs_v4_v6_v4_mapped_and_lists()
    {
        var p = Compile("""
            rules:
              - allow: { source: [10.0.0.0/8, 192.168.1.7, "2001:db8::/32", "::ffff:172.16.0.0/108", "@office"] }
            """, "lists:\n  office: [203.0.113.0/24, \"::1\"]");
        foreach (var ok in new[] { "10.1.2.3", "192.168.1.7", "2001:db8:1::5", "::ffff:10.9.9.9", "172.16.5.5", "::ffff:172.16.0.1", "203.0.113.200", "::1" })
            Assert.True(Allows(p, Req(source: ok)), ok);
        foreach (var no in new[] { "11.0.0.1", "192.168.1.8", "2001:db9::1", "172.32.0.1", "203.0.114.1", "::2", "127.0.0.1" })
            Assert.False(Allows(p, Req(source: no)), no);
    }

    [Fact]
    public void Source_list_from_a_file()
    {
        var p = Compile("rules:\n  - allow: { source: \"@nets\" }", "lists:\n  nets: { file: nets.txt }",
            ("nets.txt", "# office\n10.0.0.0/8   # main\n\n192.0.2.1\n"));
        Assert.True(Allows(p, Req(source: "10.200.0.1")));
        Assert.True(Allows(p, Req(source: "192.0.2.1")));
        Assert.False(Allows(p, Req(source: "192.0.2.2")));
    }

    [Fact]
    public void User_and_group()
    {
        var f = new ConfigFixture().File("users.htpasswd", "");
        var rt = f.BuildOk("""
            identity:
              groups: { staff: [alice, bob], ops: carol }
            policies:
              p:
                rules:
                  - allow: { user: dave }
                  - allow: { group: staff }
            """);
        var p = rt.Policies["p"];
        Assert.True(Allows(p, Req(user: "dave")));
        Assert.True(Allows(p, Req(user: "bob")));
        Assert.False(Allows(p, Req(user: "carol")));
        Assert.False(Allows(p, Req(user: "Bob")));
        Assert.False(Allows(p, Req()));
    }

    [Fact]
    public void Host_exact_subdomains_regex_glob_and_ip()
    {
        var p = Compile("""
            rules:
              - allow: { host: [exact.com, "*.sub.com", "~^api[0-9]+\\.x\\.org$", "cdn*.y.net", 10.0.0.0/8, "2001:db8::1"] }
            """);
        Assert.True(Allows(p, Req(host: "exact.com")));
        Assert.True(Allows(p, Req(host: "EXACT.com.")));
        Assert.False(Allows(p, Req(host: "www.exact.com")));
        Assert.True(Allows(p, Req(host: "a.sub.com")));
        Assert.True(Allows(p, Req(host: "a.b.sub.com")));
        Assert.False(Allows(p, Req(host: "sub.com")));        // *.x = subdomains only
        Assert.False(Allows(p, Req(host: "notsub.com")));
        Assert.True(Allows(p, Req(host: "api12.x.org")));
        Assert.False(Allows(p, Req(host: "api.x.org")));
        Assert.True(Allows(p, Req(host: "cdn7.y.net")));
        Assert.False(Allows(p, Req(host: "cdn7.y.net.evil.com")));
        Assert.True(Allows(p, Req(host: "10.1.1.1")));
        Assert.False(Allows(p, Req(host: "11.1.1.1")));
        Assert.True(Allows(p, Req(host: "[2001:db8::1]")));
    }

    [Fact]
    public void Host_lists_match_names_and_subdomains_inline_and_file_with_hosts_lines()
    {
        var p = Compile("rules:\n  - deny: { host: [\"@inline\", \"@file\"] }\n  - allow: {}",
            "lists:\n  inline: [ads.com, \"*.track.net\", 192.0.2.0/24]\n  file: { file: blocked.txt }",
            ("blocked.txt", """
                # a domain list with hosts-file lines
                plain.org
                .squid-style.org
                0.0.0.0 hosts-entry.com other-entry.com  # trailing comment
                127.0.0.1 localhost
                ::1 ip6-localhost
                """));
        foreach (var bad in new[] { "ads.com", "x.ads.com", "a.b.ads.com", "track.net", "t.track.net", "192.0.2.9",
                     "plain.org", "www.plain.org", "squid-style.org", "w.squid-style.org", "hosts-entry.com", "a.other-entry.com" })
            Assert.False(Allows(p, Req(host: bad)), bad);
        foreach (var ok in new[] { "badads.com", "ads.com.org", "plain.org.uk", "localhost", "ip6-localhost", "example.com", "192.0.3.1" })
            Assert.True(Allows(p, Req(host: ok)), ok);
    }

    [Fact]
    public void Port_numbers_and_ranges()
    {
        var p = Compile("rules:\n  - allow: { port: [80, 8000-8999] }");
        Assert.True(Allows(p, Req(port: 80)));
        Assert.True(Allows(p, Req(port: 8000)));
        Assert.True(Allows(p, Req(port: 8999)));
        Assert.False(Allows(p, Req(port: 9000)));
        Assert.False(Allows(p, Req(port: 7999)));
        Assert.False(Allows(p, Req(port: 443)));
    }

    [Fact]
    public void Method_includes_connect()
    {
        var p = Compile("rules:\n  - allow: { method: CONNECT, port: 443 }");
        Assert.True(Allows(p, Req(method: "CONNECT", port: 443)));
        Assert.False(Allows(p, Req(method: "GET", port: 443)));
    }

    [Fact]
    public void Path_glob_and_regex()
    {
        var p = Compile("rules:\n  - allow: { path: [\"/pub/**\", \"/img/*.png\", \"~^/api/v[12]/\", /exact] }");
        foreach (var ok in new[] { "/pub", "/pub/", "/pub/a", "/pub/a/b/c.txt", "/img/x.png", "/api/v1/users", "/exact" })
            Assert.True(Allows(p, Req(path: ok)), ok);
        foreach (var no in new[] { "/public", "/pu", "/img/a/x.png", "/img/x.gif", "/api/v3/", "/exact/" })
            Assert.False(Allows(p, Req(path: no)), no);
        // path_case: insensitive unless the listener says sensitive.
        Assert.True(Allows(p, Req(path: "/EXACT")));
        var sensitive = Req(path: "/EXACT");
        sensitive.PathIgnoreCase = false;
        Assert.False(Allows(p, sensitive));
    }

    [Fact]
    public void Url_regex()
    {
        var p = Compile("rules:\n  - deny: { url: \"~\\\\.exe$\" }\n  - allow: {}");
        Assert.False(Allows(p, Req(url: "http://a.com/setup.exe")));
        Assert.True(Allows(p, Req(url: "http://a.com/setup.exe.txt")));
    }

    [Fact]
    public void Header_map_all_names_must_match()
    {
        var p = Compile("rules:\n  - allow: { header: { User-Agent: [\"curl/*\", \"~^Wget\"], X-Team: blue } }");
        Assert.True(Allows(p, Req(headers: new Headers(("user-agent", "curl/8.5"), ("X-Team", "BLUE")))));
        Assert.True(Allows(p, Req(headers: new Headers(("User-Agent", "Wget/1.2"), ("X-Team", "blue")))));
        Assert.False(Allows(p, Req(headers: new Headers(("User-Agent", "Mozilla"), ("X-Team", "blue")))));
        Assert.False(Allows(p, Req(headers: new Headers(("User-Agent", "curl/8")))));
        Assert.False(Allows(p, Req()));
    }

    [Fact]
    public void Not_matches_when_its_map_does_not()
    {
        var p = Compile("rules:\n  - allow: { not: { method: CONNECT, port: 443 } }");
        Assert.True(Allows(p, Req(method: "GET", port: 443)));
        Assert.True(Allows(p, Req(method: "CONNECT", port: 8443)));
        Assert.False(Allows(p, Req(method: "CONNECT", port: 443)));
        // An attribute the request lacks makes the inner map fail, so `not` matches.
        Assert.True(Allows(p, new RequestAttributes()));

        var nested = Compile("rules:\n  - deny: { not: { not: { host: a.com } } }\n  - allow: {}");
        Assert.False(Allows(nested, Req(host: "a.com")));
        Assert.True(Allows(nested, Req(host: "b.com")));
    }

    [Fact]
    public void Command_mail_from_rcpt_to()
    {
        var p = Compile("""
            rules:
              - deny: { mail_from: ["*@spam.com", "@badsenders"] }
              - allow: { command: MAIL }
              - allow: { command: RCPT, rcpt_to: ["postmaster@example.com", "*@example.org"] }
            """, "lists:\n  badsenders: [evil@x.com, \"*@junk.net\"]");
        Assert.False(Allows(p, Req(command: "MAIL", mailFrom: "a@spam.com")));
        Assert.False(Allows(p, Req(command: "MAIL", mailFrom: "<EVIL@x.com>")));
        Assert.False(Allows(p, Req(command: "MAIL", mailFrom: "z@junk.net")));
        Assert.True(Allows(p, Req(command: "mail", mailFrom: "a@ok.com")));
        Assert.True(Allows(p, Req(command: "RCPT", rcptTo: ["PostMaster@example.com"])));
        Assert.True(Allows(p, Req(command: "RCPT", rcptTo: ["x@y.com", "bob@example.org"])));
        Assert.False(Allows(p, Req(command: "RCPT", rcptTo: ["bob@sub.example.org"])));
        Assert.False(Allows(p, Req(command: "RCPT", rcptTo: ["user@example.com"])));
        Assert.False(Allows(p, Req(command: "STOR")));
    }

    [Fact]
    public void Time_windows_including_across_midnight()
    {
        var p = Compile("rules:\n  - allow: { time: [\"Mon-Fri 08:00-18:00\", \"Sat 22:00-06:00\"] }");
        DateTime At(int day, int h, int m) => new(2024, 1, day, h, m, 0, DateTimeKind.Local); // 2024-01-01 is a Monday
        Assert.True(Allows(p, Req(time: At(1, 8, 0))));
        Assert.True(Allows(p, Req(time: At(5, 17, 59))));       // Friday
        Assert.False(Allows(p, Req(time: At(5, 18, 0))));
        Assert.False(Allows(p, Req(time: At(3, 7, 59))));
        Assert.True(Allows(p, Req(time: At(6, 23, 0))));        // Saturday night
        Assert.True(Allows(p, Req(time: At(7, 5, 59))));        // ...into Sunday morning
        Assert.False(Allows(p, Req(time: At(7, 6, 0))));
        Assert.False(Allows(p, Req(time: At(7, 23, 0))));       // Sunday night is not Saturday's
        Assert.False(Allows(p, Req(time: At(6, 5, 0))));        // Saturday morning belongs to Friday night

        var days = Compile("rules:\n  - allow: { time: \"Sat,Sun\" }");
        Assert.True(Allows(days, Req(time: At(7, 12, 0))));
        Assert.False(Allows(days, Req(time: At(1, 12, 0))));
        // Without a time, the engine asks the clock: the result is whichever day it is, and must not throw.
        _ = days.Evaluate(new RequestAttributes());
    }

    [Fact]
    public void Sni_is_matched_like_host()
    {
        var p = Compile("rules:\n  - allow: { sni: \"*.example.com\" }");
        Assert.True(Allows(p, Req(sni: "www.example.com")));
        Assert.False(Allows(p, Req(host: "www.example.com")));
    }

    [Fact]
    public void Response_rules_content_type_and_size_are_asked_at_the_response()
    {
        var p = Compile("""
            rules:
              - deny: { content_type: ["application/x-*", "video/*"] }
                reason: no executables
              - deny: { size: "> 10MiB" }
              - allow: { host: a.com }
            """);
        Assert.Equal(2, p.ResponseRules.Length);
        Assert.Single(p.RequestRules);
        // Request time: response rules are not tried.
        Assert.True(Allows(p, Req(host: "a.com")));
        Assert.Equal("p#3", p.Evaluate(Req(host: "a.com")).RuleName);

        var r1 = p.EvaluateResponse(Req(host: "a.com", contentType: "Application/X-Msdownload; charset=binary"));
        Assert.Equal((Verdict.Deny, "p#1", "no executables"), (r1.Verdict, r1.RuleName, r1.Reason));
        Assert.False(p.EvaluateResponse(Req(contentType: "video/mp4")).Allowed);
        var r2 = p.EvaluateResponse(Req(contentType: "text/html", size: 11L << 20));
        Assert.Equal((Verdict.Deny, "p#2"), (r2.Verdict, r2.RuleName));
        // None matches: the response passes.
        Assert.True(p.EvaluateResponse(Req(contentType: "text/html", size: 10L << 20)).Allowed);
        Assert.True(p.EvaluateResponse(Req()).Allowed);
    }

    [Fact]
    public void Size_bounds()
    {
        var p = Compile("rules:\n  - deny: { size: [\"<= 10\", \"> 2000000\"] }\n  - deny: { size: \">= 1MB\" }\n  - deny: { size: 500 }");
        string? Rule(long n) => p.EvaluateResponse(Req(size: n)) is { Allowed: false } d ? d.RuleName : null;
        Assert.Equal("p#1", Rule(10));
        Assert.Null(Rule(11));
        Assert.Equal("p#1", Rule(2_000_001));
        Assert.Equal("p#2", Rule(2_000_000));
        Assert.Equal("p#2", Rule(1_000_000));
        Assert.Null(Rule(999_999));
        Assert.Equal("p#3", Rule(500));
        Assert.Null(Rule(501));
    }

    [Fact]
    public void EvaluateAll_tries_every_rule_in_order_for_one_moment_protocols()
    {
        var p = Compile("rules:\n  - deny: { command: DATA, size: \"> 10MiB\" }\n  - allow: { command: DATA }");
        Assert.Equal("p#1", p.EvaluateAll(Req(command: "DATA", size: 20L << 20)).RuleName);
        Assert.Equal("p#2", p.EvaluateAll(Req(command: "DATA", size: 1024)).RuleName);
        // Evaluate alone skips the size rule (it is a response rule for http).
        Assert.Equal("p#2", p.Evaluate(Req(command: "DATA", size: 20L << 20)).RuleName);
    }

    [Fact]
    public void Trace_names_every_rule_tried()
    {
        var p = Compile("rules:\n  - deny: { host: a.com }\n  - name: web\n    allow: { port: 80 }");
        var t = new PolicyTrace();
        var d = p.Evaluate(Req(host: "b.com", port: 80), t);
        Assert.True(d.Allowed);
        Assert.Contains(t.Lines, l => l.StartsWith("rule p#1 [deny]") && l.EndsWith("no match"));
        Assert.Contains(t.Lines, l => l.StartsWith("rule web [allow]") && l.EndsWith("MATCH"));
        Assert.Contains("=> allow by web", t.Lines[^1]);
    }

    [Fact]
    public void TRACE_is_unlocked_only_by_an_allowing_rule_that_names_it()
    {
        // A deny rule naming TRACE (for one host) must not unlock TRACE for everyone else.
        var denyNames = Compile("""
            default: deny
            rules:
              - deny: { method: TRACE, host: evil.test }
              - allow: { source: 127.0.0.0/8 }
            """);
        var d = Bastion.Protocols.Http.HttpDecisions.Decide(denyNames, Req(host: "good.test", method: "TRACE", source: "127.0.0.1"));
        Assert.Equal((Verdict.Deny, "p#2", "TRACE is denied unless a rule names it"), (d.Verdict, d.RuleName, d.Reason));
        Assert.True(Bastion.Protocols.Http.HttpDecisions.Decide(denyNames, Req(host: "good.test", method: "GET", source: "127.0.0.1")).Allowed);

        var allowNames = Compile("""
            default: deny
            rules:
              - allow: { method: [GET, TRACE] }
            """);
        Assert.True(Bastion.Protocols.Http.HttpDecisions.Decide(allowNames, Req(method: "TRACE")).Allowed);
    }
}
