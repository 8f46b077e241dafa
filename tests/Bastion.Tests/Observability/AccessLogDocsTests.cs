using System.Text.Json;
using System.Text.RegularExpressions;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Observability;

/// <summary>
/// docs/access-log.md shows real lines: every block marked `&lt;!-- real: FORMAT SCENARIO --&gt;` is compared with the
/// lines a gateway writes for that scenario in that format, run here with the configuration the page shows. Times,
/// ids, ports, durations and byte counts vary from run to run and are masked on both sides; the rest must match.
/// </summary>
public sealed partial class AccessLogDocsTests(ITestOutputHelper output) : IAsyncLifetime
{
    TestOrigin _origin = null!;

    public async Task InitializeAsync() => _origin = await TestOrigin.StartAsync();

    public async Task DisposeAsync() => await _origin.DisposeAsync();

    /// <summary>The configuration docs/access-log.md shows (the origin's port and the log path filled in).</summary>
    public const string Config = """
        logging: { access: LOG, format: FORMAT }
        identity: { users: users.htpasswd }
        lists:
          blocked: [ads.example.net]
        listeners:
          - { name: office, type: http-proxy, listen: 127.0.0.1:0, policy: office-out, authenticate: true }
        policies:
          office-out:
            default: deny
            rules:
              - name: blocked-domains
                deny: { host: "@blocked" }
                reason: blocked domain
              - name: intranet
                allow: { host: 127.0.0.1 }
        """;

    static readonly string Users = $"alice:{Bastion.Identity.Htpasswd.HashBcrypt("alice-pass", 4)}\n";

    /// <summary>What the page's scenarios do, with curl through the proxy.</summary>
    string[] Scenario(string name, string proxy) => name switch
    {
        "allowed" => ["-x", proxy, "-U", "alice:alice-pass", "-A", "Mozilla/5.0 (X11; Linux x86_64)", "-e", "http://intranet.example/start", $"{_origin.Url}/100b"],
        "denied" => ["-x", proxy, "-U", "alice:alice-pass", "-A", "Mozilla/5.0 (X11; Linux x86_64)", "http://ads.example.net/banner.js"],
        "default" => ["-x", proxy, "-U", "alice:alice-pass", "-p", "-A", "Mozilla/5.0 (X11; Linux x86_64)", "http://example.org:22/"],
        "login-failed" => ["-x", proxy, "-U", "alice:wrong", "-A", "Mozilla/5.0 (X11; Linux x86_64)", $"{_origin.Url}/100b"],
        "tunnel" => ["-x", proxy, "-U", "alice:alice-pass", "-p", "-A", "Mozilla/5.0 (X11; Linux x86_64)", $"{_origin.Url}/100b"],
        _ => throw new ArgumentException($"docs/access-log.md names an unknown scenario '{name}'"),
    };

    /// <summary>The `<!-- real: FORMAT SCENARIO -->` blocks of the page, in order.</summary>
    static List<(string Format, string Scenario, List<string> Lines)> Documented()
    {
        var blocks = new List<(string, string, List<string>)>();
        var lines = File.ReadAllLines(Path.Combine(Repo.Root, "docs", "access-log.md"));
        for (int i = 0; i < lines.Length; i++)
        {
            var m = MarkerRegex().Match(lines[i]);
            if (!m.Success) continue;
            int open = Array.FindIndex(lines, i + 1, l => l.StartsWith("```", StringComparison.Ordinal));
            int close = Array.FindIndex(lines, open + 1, l => l.StartsWith("```", StringComparison.Ordinal));
            blocks.Add((m.Groups[1].Value, m.Groups[2].Value, lines[(open + 1)..close].Where(l => l.Length > 0).ToList()));
            i = close;
        }
        return blocks;
    }

    [GeneratedRegex(@"^<!-- real: (\S+) (\S+) -->$")]
    private static partial Regex MarkerRegex();

    [Fact]
    public async Task Documented_lines_are_what_the_gateway_writes()
    {
        var documented = Documented();
        Assert.True(documented.Count >= 8, $"docs/access-log.md has {documented.Count} real-line blocks");
        foreach (var format in documented.Select(d => d.Format).Distinct())
        {
            var log = Path.Combine(Scratch.NewDir("doclog"), "access.log");
            var formatText = format == "template" ? "\"{ts} {client_ip} {user} {verdict} {status} \\\"{request}\\\" {rule} {upstream_ms}\"" : format;
            var yaml = Config.Replace("LOG", log).Replace("FORMAT", formatText);
            await using var gw = await TestGateway.StartAsync(yaml, new Dictionary<string, string> { ["users.htpasswd"] = Users });
            int seen = 0;
            foreach (var (_, scenario, expected) in documented.Where(d => d.Format == format))
            {
                await Proc.CurlAsync(Scenario(scenario, gw.Url("office")));
                var real = await Wait.ForAsync(() =>
                {
                    var all = File.Exists(log) ? File.ReadAllLines(log) : [];
                    return (all.Length >= seen + expected.Count, all);
                }, TimeSpan.FromSeconds(20), $"{expected.Count} {format} line(s) for '{scenario}'");
                var got = real[seen..(seen + expected.Count)];
                seen += expected.Count;
                output.WriteLine($"<!-- real: {format} {scenario} -->\n```\n{string.Join("\n", got)}\n```\n");
                // To refresh the page: BASTION_DOCS_PRINT=1 dotnet test --filter AccessLogDocs --logger "console;verbosity=detailed"
                if (Environment.GetEnvironmentVariable("BASTION_DOCS_PRINT") == "1") continue;
                for (int i = 0; i < expected.Count; i++)
                    Assert.True(Mask(format, expected[i]) == Mask(format, got[i]),
                        $"docs/access-log.md, {format} {scenario}: documented\n  {expected[i]}\nbut the gateway wrote\n  {got[i]}\n(masked: {Mask(format, expected[i])}\n     vs: {Mask(format, got[i])})");
            }
        }
    }

    /// <summary>Run-to-run variation out: times, ids, ports, durations, byte counts, version numbers.</summary>
    static string Mask(string format, string line)
    {
        if (format == "json")
        {
            var e = JsonDocument.Parse(line).RootElement;
            var parts = new List<string>();
            foreach (var p in e.EnumerateObject())
            {
                bool variable = p.Name is "ts" or "id" or "conn" or "client" or "duration_ms" or "upstream_ms" or "bytes_in" or "bytes_out";
                parts.Add($"{p.Name}={(variable ? p.Value.ValueKind.ToString() : Ports(p.Value.ToString()))}");
            }
            return string.Join(" ", parts);
        }
        line = IdRegex().Replace(line, "ID");
        line = Ports(line);
        line = NumberRegex().Replace(line, "0");
        return SpacesRegex().Replace(line, " ");
    }

    static string Ports(string s) => PortRegex().Replace(s, ":PORT");

    [GeneratedRegex(@"\b[0-9a-f]{6}-[0-9a-f]+\b")]
    private static partial Regex IdRegex();

    [GeneratedRegex(@":\d{2,5}\b")]
    private static partial Regex PortRegex();

    [GeneratedRegex(@"\d+(\.\d+)?")]
    private static partial Regex NumberRegex();

    [GeneratedRegex(@" +")]
    private static partial Regex SpacesRegex();
}
