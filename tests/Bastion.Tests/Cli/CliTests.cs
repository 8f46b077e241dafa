using System.Text.RegularExpressions;
using Bastion.Identity;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Cli;

/// <summary>The real `bastion` executable (SPEC 1): exit codes and output people and scripts rely on.</summary>
public class CliTests
{
    static readonly Regex ErrorLine = new(@"^(?<file>/[^:]+):(?<line>\d+):(?<col>\d+): (?<msg>.+)$", RegexOptions.Multiline);

    static string Write(string yaml, params (string Name, string Content)[] files)
    {
        var dir = Scratch.NewDir("cli");
        foreach (var (n, c) in files) File.WriteAllText(Path.Combine(dir, n), c);
        var path = Path.Combine(dir, "bastion.yaml");
        File.WriteAllText(path, yaml);
        return path;
    }

    const string Good = """
        lists:
          blocked: [ads.example]
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
        policies:
          out:
            rules:
              - name: no-ads
                deny: { host: "@blocked" }
                reason: blocked domain
              - allow: { source: 127.0.0.0/8, port: [80, 443] }
        """;

    [Fact]
    public async Task Check_ok_exits_0()
    {
        var r = await Proc.BastionAsync(["check", "-c", Write(Good)]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Equal("ok", r.Stdout.Trim());
    }

    [Fact]
    public async Task Check_errors_exit_2_with_file_line_col()
    {
        var path = Write("""
            listeners:
              - name: web
                type: http-proxy
                listen: 127.0.0.1:0
                policy: nope
                colour: blue
            policies:
              p:
                rules:
                  - allow: { source: 10.0.0.0/40 }
            """);
        var r = await Proc.BastionAsync(["check", "-c", path]);
        Assert.True(r.ExitCode == 2, r.ToString());
        var lines = r.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3, lines.Length);
        Assert.All(lines, l => Assert.Matches(ErrorLine, l));
        Assert.Contains($"{path}:5:13: listener 'web': unknown policy 'nope'", r.Stdout);
        Assert.Contains($"{path}:6:5: unknown key 'colour' in listener", r.Stdout);
        Assert.Contains($"{path}:10:26: source: '10.0.0.0/40' is not an IP address or CIDR", r.Stdout);
        Assert.DoesNotContain("ok", lines);
    }

    [Fact]
    public async Task Check_warns_but_passes_when_a_rule_can_never_match()
    {
        var path = Write("""
            listeners:
              - { name: db, type: tcp, listen: 127.0.0.1:0, upstream: 127.0.0.1:5432, policy: p }
            policies:
              p:
                rules:
                  - allow: { host: db.example }
                  - allow: { port: 5432 }
            """);
        var r = await Proc.BastionAsync(["check", "-c", path]);
        Assert.True(r.ExitCode == 0, r.ToString());
        Assert.Contains($"{path}:6:9: warning: rule p#1 can never match on listener 'db' (tcp does not supply 'host')", r.Stdout);
        Assert.EndsWith("ok", r.Stdout.Trim());
    }

    [Fact]
    public async Task Check_unreadable_file_exits_2()
    {
        var path = Path.Combine(Scratch.NewDir("cli"), "missing.yaml");
        var r = await Proc.BastionAsync(["check", "-c", path]);
        Assert.Equal(2, r.ExitCode);
        Assert.StartsWith($"{path}:1:1: cannot read configuration", r.Stdout);
    }

    [Fact]
    public async Task Explain_allow_exits_0_and_deny_exits_1_with_the_trace()
    {
        var path = Write(Good);
        var allow = await Proc.BastionAsync(["explain", "-c", path, "--listener", "web", "--source", "127.0.0.1", "GET", "http://example.com/x"]);
        Assert.True(allow.ExitCode == 0, allow.ToString());
        Assert.Contains("rule no-ads [deny]", allow.Stdout);
        Assert.Contains("rule out#2 [allow]", allow.Stdout);
        Assert.Contains("verdict: allow (rule out#2)", allow.Stdout);

        var deny = await Proc.BastionAsync(["explain", "-c", path, "--listener", "web", "CONNECT", "www.ads.example:443"]);
        Assert.True(deny.ExitCode == 1, deny.ToString());
        Assert.Contains("-> MATCH", deny.Stdout);
        Assert.Contains("verdict: deny (rule no-ads: blocked domain)", deny.Stdout);

        var byDefault = await Proc.BastionAsync(["explain", "-c", path, "--listener", "web", "--source", "10.1.1.1", "GET", "http://example.com/"]);
        Assert.True(byDefault.ExitCode == 1, byDefault.ToString());
        Assert.Contains("verdict: deny (rule out#default: no rule allows it)", byDefault.Stdout);

        var noListener = await Proc.BastionAsync(["explain", "-c", path, "--listener", "nope", "GET", "http://example.com/"]);
        Assert.Equal(2, noListener.ExitCode);
        Assert.Contains("no listener 'nope'", noListener.Stderr);
    }

    [Fact]
    public async Task Explain_asks_response_rules_when_given_a_content_type()
    {
        var path = Write(Good.Replace("      - name: no-ads", "      - deny: { content_type: \"application/x-*\" }\n      - name: no-ads"));
        var r = await Proc.BastionAsync(["explain", "-c", path, "--listener", "web", "--content-type", "application/x-msdownload", "GET", "http://example.com/a.exe"]);
        Assert.True(r.ExitCode == 1, r.ToString());
        Assert.Contains("response:", r.Stdout);
        Assert.Contains("verdict: deny (rule out#1", r.Stdout);
    }

    [Fact]
    public async Task Passwd_writes_a_bcrypt_line_that_verifies()
    {
        var file = Path.Combine(Scratch.NewDir("cli"), "users.htpasswd");
        File.WriteAllText(file, "bob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n");
        var r = await Proc.BastionAsync(["passwd", file, "alice"], stdin: "s3cret pass\n");
        Assert.True(r.ExitCode == 0, r.ToString());
        var problems = new List<string>();
        var users = Htpasswd.Read(file, problems);
        Assert.Empty(problems);
        Assert.Matches(@"^\$2[aby]\$\d\d\$", users["alice"]);
        Assert.True(users.ContainsKey("bob"));
        var store = new IdentityStore(users);
        Assert.True(await store.VerifyAsync("alice", "s3cret pass"));
        Assert.False(await store.VerifyAsync("alice", "s3cret"));

        var empty = await Proc.BastionAsync(["passwd", file, "carol"], stdin: "\n");
        Assert.Equal(2, empty.ExitCode);
        var bad = await Proc.BastionAsync(["passwd", file, "a:b"], stdin: "x\n");
        Assert.Equal(2, bad.ExitCode);
    }

    [Fact]
    public async Task Version_and_help()
    {
        var v = await Proc.BastionAsync(["--version"]);
        Assert.Equal(0, v.ExitCode);
        Assert.Matches(@"^bastion \d+\.\d+\.\d+", v.Stdout.Trim());
        var h = await Proc.BastionAsync(["--help"]);
        Assert.Equal(0, h.ExitCode);
        foreach (var cmd in new[] { "bastion run", "bastion check", "bastion explain", "bastion passwd", "--version" })
            Assert.Contains(cmd, h.Stdout);
        var unknown = await Proc.BastionAsync(["frobnicate"]);
        Assert.Equal(2, unknown.ExitCode);
        Assert.Contains("unknown command 'frobnicate'", unknown.Stderr);
    }

    [Fact]
    public async Task Run_with_a_bad_config_exits_2_without_starting()
    {
        var path = Write(Good.Replace("policy: out", "policy: missing"));
        var r = await Proc.BastionAsync(["run", "-c", path], timeout: TimeSpan.FromSeconds(60));
        Assert.True(r.ExitCode == 2, r.ToString());
        Assert.Contains($"{path}:7:13: listener 'web': unknown policy 'missing'", r.Stderr);
        Assert.Contains("not starting", r.Stderr);
        Assert.DoesNotContain("listening on", r.Stderr);
    }
}
