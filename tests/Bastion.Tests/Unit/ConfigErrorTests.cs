using Bastion.Configuration;

namespace Bastion.Tests.Unit;

/// <summary>`check` errors: every one says FILE:LINE:COL at the offending text (SPEC 1, 2).</summary>
public class ConfigErrorTests
{
    const string Proxy = """
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: p
        """;

    static (ConfigFixture F, List<ConfigError> Errors) Build(string yaml, params (string Name, string Content)[] files)
    {
        var f = new ConfigFixture();
        foreach (var (n, c) in files) f.File(n, c);
        return (f, f.Build(yaml).Errors);
    }

    [Fact]
    public void Valid_config_has_no_errors()
    {
        var (_, errors) = Build(Proxy + "\npolicies:\n  p:\n    rules:\n      - allow: {}\n");
        Assert.Empty(errors);
    }

    [Fact]
    public void Unknown_keys_at_every_level()
    {
        var (f, errors) = Build("""
            loging: { access: stdout }
            listeners:
              - name: web
                type: http-proxy
                listen: 127.0.0.1:0
                polcy: p
                limits: { idle_timeot: 5s }
            policies:
              p:
                defualt: deny
                rules:
                  - allow: { hots: example.com }
                    reasn: x
            """);
        ConfigFixture.HasError(errors, f.Path, 1, 1, "unknown key 'loging' in configuration");
        ConfigFixture.HasError(errors, f.Path, 6, 5, "unknown key 'polcy' in listener");
        ConfigFixture.HasError(errors, f.Path, 7, 15, "unknown key 'idle_timeot' in limits");
        ConfigFixture.HasError(errors, f.Path, 10, 5, "unknown key 'defualt'");
        ConfigFixture.HasError(errors, f.Path, 12, 18, "unknown key 'hots' in conditions");
        ConfigFixture.HasError(errors, f.Path, 13, 9, "unknown key 'reasn' in rule");
    }

    [Fact]
    public void Yaml_syntax_error_has_a_position()
    {
        var (f, errors) = Build("listeners:\n  - name: web\n   type: [unclosed\n");
        var e = Assert.Single(errors);
        Assert.Equal(f.Path, e.Pos.File);
        Assert.True(e.Pos.Line >= 2, e.ToString());
        Assert.Contains("YAML syntax", e.Message);
    }

    [Theory]
    [InlineData("10.0.0.0/33", "not an IP address or CIDR")]
    [InlineData("10.0.0/8", "not an IP address or CIDR")]     // inet_aton shorthand is a typo, not 10.0.0.0/8
    [InlineData("10", "not an IP address or CIDR")]
    [InlineData("300.1.1.1", "not an IP address or CIDR")]
    [InlineData("::1/129", "not an IP address or CIDR")]
    [InlineData("10.0.0.0/x", "not an IP address or CIDR")]
    public void Bad_cidrs_point_at_the_value(string cidr, string text)
    {
        var (f, errors) = Build(Proxy + $"\npolicies:\n  p:\n    rules:\n      - allow: {{ source: [127.0.0.1, \"{cidr}\"] }}\n");
        ConfigFixture.HasError(errors, f.Path, 9, 38, text);
    }

    [Fact]
    public void Bad_cidr_in_a_list_used_as_source()
    {
        var (f, errors) = Build(Proxy + """

            lists:
              office: [10.0.0.0/8, not-an-ip]
            policies:
              p:
                rules:
                  - allow: { source: "@office" }
            """);
        ConfigFixture.HasError(errors, f.Path, 11, 26, "list '@office' used as source has entries that are not IPs or CIDRs: not-an-ip");
    }

    [Theory]
    [InlineData("path: \"~(unclosed\"", "bad pattern '~(unclosed'")]
    [InlineData("url: \"~[z-a]\"", "bad pattern '~[z-a]'")]
    [InlineData("host: \"~a{2,1}\"", "bad pattern")]
    [InlineData("header: { X-A: \"~(\" }", "bad pattern")]
    [InlineData("port: 70000", "not a port")]
    [InlineData("port: 9000-8000", "not a port range")]
    [InlineData("size: \"> ten\"", "not a size bound")]
    [InlineData("time: \"Mon-Fry 08:00-18:00\"", "not a day")]
    [InlineData("time: \"Mon-Fri 8-18\"", "not a range of hours")]
    [InlineData("time: \"Mon-Fri 25:00-26:00\"", "not a range of hours")]
    [InlineData("time: \"09:00-09:00\"", "empty range of hours")]
    [InlineData("host: \"a.com/x\"", "not a host name, IP or CIDR")]
    [InlineData("host: []", "the list is empty")]
    [InlineData("method: []", "the list is empty")]
    [InlineData("not: {}", "'not' needs at least one condition")]
    public void Bad_conditions_point_at_the_value(string cond, string text)
    {
        var (f, errors) = Build(Proxy + $"\npolicies:\n  p:\n    rules:\n      - allow: {{ {cond} }}\n");
        var e = Assert.Single(errors, e => !e.IsWarning);
        Assert.Equal(f.Path, e.Pos.File);
        Assert.Equal(9, e.Pos.Line);
        // The column is the value's (or the key's when the whole value is wrong), never the start of the rule.
        Assert.True(e.Pos.Col > 16, e.ToString());
        Assert.Contains(text, e.Message);
    }

    [Fact]
    public void Dangling_names()
    {
        var (f, errors) = Build("""
            identity:
              groups: { staff: [alice] }
            listeners:
              - name: web
                type: http-proxy
                listen: 127.0.0.1:0
                policy: nope
              - name: db
                type: tcp
                listen: 127.0.0.1:0
                upstream: nogroup
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                routes:
                  - { path: /, upstream: missing }
                policy: p
            policies:
              p:
                rules:
                  - allow: { host: "@nolist" }
                  - allow: { group: [staff, admins] }
                  - allow: { source: "@nosrc", mail_from: "@nomail" }
            """);
        ConfigFixture.HasError(errors, f.Path, 7, 13, "unknown policy 'nope' (defined: p)");
        ConfigFixture.HasError(errors, f.Path, 11, 15, "upstream 'nogroup' is neither host:port nor a group");
        ConfigFixture.HasError(errors, f.Path, 16, 9, "unknown upstream 'missing'");
        ConfigFixture.HasError(errors, f.Path, 21, 24, "unknown list '@nolist'");
        ConfigFixture.HasError(errors, f.Path, 22, 33, "unknown group 'admins'");
        ConfigFixture.HasError(errors, f.Path, 23, 26, "unknown list '@nosrc'");
        ConfigFixture.HasError(errors, f.Path, 23, 47, "unknown list '@nomail'");
    }

    [Fact]
    public void Unreadable_files()
    {
        var (f, errors) = Build("""
            admin: { listen: 127.0.0.1:0, token_file: no.token }
            identity:
              users: missing.htpasswd
            lists:
              blocked: { file: missing-domains.txt }
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                tls: { cert: site.crt, key: site.key }
                routes: [{ path: /, upstream: "http://127.0.0.1:1" }]
                policy: p
            policies:
              p: { rules: [{ deny: { host: "@blocked" } }] }
            """);
        ConfigFixture.HasError(errors, f.Path, 1, 8, "admin.token_file: cannot read");
        ConfigFixture.HasError(errors, f.Path, 3, 10, "identity.users: cannot read");
        ConfigFixture.HasError(errors, f.Path, 5, 20, "list 'blocked': cannot read");
        ConfigFixture.HasError(errors, f.Path, 10, 10, "cannot read certificate");
        ConfigFixture.HasError(errors, f.Path, 10, 10, "cannot read key");
    }

    [Fact]
    public void Unreadable_configuration_file()
    {
        var path = Path.Combine(new ConfigFixture().Dir, "none.yaml");
        var e = Assert.Throws<ConfigException>(() => Bastion.Hosting.Runtime.Load(path));
        Assert.Equal(new SourcePos(path, 1, 1), Assert.Single(e.Errors).Pos);
        Assert.Contains("cannot read configuration", e.Errors[0].Message);
    }

    [Fact]
    public void Malformed_htpasswd_lines_are_errors_with_the_line()
    {
        var (f, errors) = Build("identity:\n  users: users.htpasswd\n",
            ("users.htpasswd", "alice:$2y$10$short\nbob:plaintext\n# comment\nnocolon\n"));
        ConfigFixture.HasError(errors, f.Path, 2, 10, "line 1: user 'alice' has a malformed hash");
        ConfigFixture.HasError(errors, f.Path, 2, 10, "line 2: user 'bob' has an unsupported hash");
        ConfigFixture.HasError(errors, f.Path, 2, 10, "line 4: expected user:hash");
    }

    [Fact]
    public void Port_clashes()
    {
        var (f, errors) = Build("""
            admin: { listen: 127.0.0.1:19090 }
            listeners:
              - { name: a, type: tcp, listen: 127.0.0.1:19091, upstream: 127.0.0.1:1 }
              - { name: b, type: tcp, listen: "127.0.0.1:19091", upstream: 127.0.0.1:1 }
              - { name: c, type: tcp, listen: "localhost:19090", upstream: 127.0.0.1:1 }
              - { name: d, type: tcp, listen: "*:19092", upstream: 127.0.0.1:1 }
              - { name: e, type: tcp, listen: "127.0.0.2:19092", upstream: 127.0.0.1:1 }
              - { name: f, type: tcp, listen: "127.0.0.3:0", upstream: 127.0.0.1:1 }
              - { name: g, type: tcp, listen: "127.0.0.3:0", upstream: 127.0.0.1:1 }
              - { name: g, type: tcp, listen: "example.org:80", upstream: 127.0.0.1:1 }
            """);
        ConfigFixture.HasError(errors, f.Path, 4, 35, "127.0.0.1:19091 is already used by 'a'");
        ConfigFixture.HasError(errors, f.Path, 5, 35, "is already used by 'admin'");
        ConfigFixture.HasError(errors, f.Path, 7, 35, "port 19092 clashes with 'd'");
        ConfigFixture.HasError(errors, f.Path, 10, 13, "duplicate listener name 'g'");
        ConfigFixture.HasError(errors, f.Path, 10, 35, "listen host 'example.org' must be an IP address, localhost or *");
        // Port 0 (any free port) never clashes.
        Assert.DoesNotContain(errors, e => !e.IsWarning && e.Message.Contains("'f'"));
    }

    [Fact]
    public void Unknown_listener_type()
    {
        var (f, errors) = Build("listeners:\n  - name: x\n    type: gopher\n    listen: 127.0.0.1:0\n");
        ConfigFixture.HasError(errors, f.Path, 3, 11, "unknown listener type 'gopher'");
    }

    [Fact]
    public void Tls_inspection_without_a_ca_folder_is_refused_at_the_ca_value()
    {
        var (f, errors) = Build(Proxy + "\n    tls_inspection: { ca: ca/, inspect: [\"*.example.com\"] }\npolicies:\n  p: { rules: [{ allow: {} }] }\n");
        ConfigFixture.HasError(errors, f.Path, 6, 27, "tls_inspection.ca: ");
        ConfigFixture.HasError(errors, f.Path, 6, 27, "bastion ca init");
    }

    [Fact]
    public void Bad_durations_sizes_and_values()
    {
        var (f, errors) = Build("""
            listeners:
              - name: web
                type: http-proxy
                listen: 127.0.0.1:0
                authenticate: maybe
                limits:
                  idle_timeout: 5 minutes
                  max_request_body: 10 MB5
                  max_connections: -1
                  rate: fast
            """);
        ConfigFixture.HasError(errors, f.Path, 5, 19, "authenticate must be true or false, not 'maybe'");
        ConfigFixture.HasError(errors, f.Path, 7, 21, "idle_timeout: '5 minutes' is not a duration");
        ConfigFixture.HasError(errors, f.Path, 8, 25, "max_request_body: '10 MB5' is not a size");
        ConfigFixture.HasError(errors, f.Path, 9, 24, "max_connections must be a whole number");
        ConfigFixture.HasError(errors, f.Path, 10, 13, "rate: 'fast' is not a rate");
    }

    [Fact]
    public void Authenticate_without_users_file()
    {
        var (f, errors) = Build(Proxy + "\n    authenticate: true\npolicies:\n  p: { rules: [{ allow: {} }] }\n");
        ConfigFixture.HasError(errors, f.Path, 6, 19, "authenticate is on but identity.users names no htpasswd file");
    }

    [Fact]
    public void Rules_need_exactly_one_verdict()
    {
        var (f, errors) = Build(Proxy + "\npolicies:\n  p:\n    rules:\n      - { allow: {}, deny: {} }\n      - reason: nothing\n");
        ConfigFixture.HasError(errors, f.Path, 9, 9, "exactly one of 'allow:' or 'deny:'");
        ConfigFixture.HasError(errors, f.Path, 10, 9, "exactly one of 'allow:' or 'deny:'");
    }
}
