using System.Diagnostics;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Corpora;

/// <summary>The OWASP CRS regression requests (odd methods, targets, headers, bodies) replayed through the forward proxy.</summary>
public sealed class CrsCorpusTests(ITestOutputHelper output)
{
    /// <summary>All of today's corpus (about 5,000 requests take a few seconds); a larger one is sampled deterministically.</summary>
    const int MaxReplay = 6000;

    [Fact]
    public async Task Every_crs_request_is_answered_and_logged_once()
    {
        var rows = CrsCorpus.Load();
        Assert.True(rows.Count > 4000, $"only {rows.Count} CRS requests");
        await using var sink = await SinkOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync(LlhttpCorpusTests.GatewayYaml);
        var sample = Replay.Sample(rows, MaxReplay);
        var requests = sample.Select(r => new WireRequest(r.Id, r.RuleId.ToString(System.Globalization.CultureInfo.InvariantCulture), CrsCorpus.ToWire(r, sink.Port), LogLines: CrsCorpus.Requests(r))).ToList();

        var sw = Stopwatch.StartNew();
        var results = await Replay.RunAsync(gw.Port("web"), requests, 16, TimeSpan.FromSeconds(15));
        var elapsed = sw.Elapsed;
        output.WriteLine($"CRS: {requests.Count} of {rows.Count} requests (every {(double)rows.Count / requests.Count:0.0}th) in {elapsed.TotalSeconds:0.0}s");
        output.WriteLine($"answers: {Replay.Summary(results)}");
        output.WriteLine($"gateway 4xx: {Replay.StatusSummary(results, Answer.Gateway4xx)}; gateway 5xx: {Replay.StatusSummary(results, Answer.Gateway5xx)}; origin non-200: {Replay.StatusSummary(results, Answer.OriginOther)}");
        foreach (var r in results.Where(r => r.Answer is Answer.Gateway4xx or Answer.Gateway5xx or Answer.None).Take(40))
            output.WriteLine($"  {r.Request.Id,-10} {r.Answer,-10} {r.Status} {Head(r.Request.Bytes)}");

        Assert.DoesNotContain(results, r => r.Answer == Answer.Hung);
        Assert.DoesNotContain(results, r => r.Answer == Answer.None);
        // 505 is the right refusal of HTTP/0.9, /2.0 and the like; any other 5xx of the gateway's own is a bug.
        Assert.DoesNotContain(results, r => r.Answer == Answer.Gateway5xx && r.Status != 505);
        Assert.True(results.Count(r => r.Answer == Answer.Origin200) > requests.Count * 9 / 10, "most CRS requests are well-formed HTTP and must reach the origin");
        Assert.Equal(results.Count(r => r.Answer == Answer.Origin200), sink.Delivered);

        // One access-log line per request (two where data left over after a request without Content-Length is a
        // second, broken request).
        output.WriteLine(await Replay.CheckAccessLogAsync(gw, results));

        var alive = await RawClient.ExchangeAsync(gw.Port("web"), System.Text.Encoding.ASCII.GetBytes($"GET http://127.0.0.1:{sink.Port}/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), TimeSpan.FromSeconds(10));
        Assert.StartsWith("HTTP/1.1 200", alive.Response);
    }

    static string Head(byte[] b)
    {
        var s = System.Text.Encoding.Latin1.GetString(b, 0, Math.Min(b.Length, 90));
        int eol = s.IndexOf('\r');
        return (eol < 0 ? s : s[..eol]).Replace("\t", "\\t", StringComparison.Ordinal);
    }

    // Policy regexes for SQL injection and XSS in raw (percent-encoded) URLs and header values.
    const string Sp = @"(?:\s|\+|%20|%09|%0a|%0d|/\*.*?\*/|%2f\*.*?\*%2f)";
    const string Quote = @"(?:'|%27|""|%22|`|%60)";
    internal const string Sqli = "(?i)(union" + Sp + "+(?:all" + Sp + "+|distinct" + Sp + "+)?(?:select|\\(|%28)"
        + "|select" + Sp + ".*from" + Sp
        + "|\\b(?:sleep|benchmark|pg_sleep|extractvalue|updatexml|load_file|xp_cmdshell|dbms_pipe|utl_inaddr|waitfor" + Sp + "+delay)" + Sp + "*(?:\\(|%28)"
        + "|information_schema|pg_catalog|sysobjects|@@version"
        + "|" + Quote + Sp + "*(?:or|and|xor|\\|\\||%7c%7c|&&|%26%26)" + Sp
        + "|" + Quote + Sp + "*(?:;|%3b|--|%2d%2d|#|%23|/\\*)"
        + "|(?:%20|\\+|[^a-z0-9])(?:or|and|xor)" + Sp + "+\\d+" + Sp + "*(?:=|%3d|<|>|%3c|%3e|!=)" + Sp + "*\\d+"
        + "|(?:=|%3d)\\d+(?:=|%3d|!=|<=>|%3c%3d%3e)\\d+"
        + "|(?:like|is)" + Sp + "+(?:not" + Sp + "+)?null)";
    internal const string Xss = "(?i)((?:<|%3c|\\\\u003c|&lt;|%26lt%3b)(?:\\s|%20|/|%2f|!|%21)*(?:script|svg|img|iframe|body|object|embed|style|x:script|math|details|video|audio|marquee|meta|link|form|input|isindex|frameset|base|applet|a\\b|xss|div|image|html|button|textarea|select|keygen|table|template|noscript)"
        + "|(?:javascript|vbscript|livescript|data:text/html)(?::|%3a)"
        + "|(?:^|[^a-z])on[a-z]{3,}" + Sp + "*(?:=|%3d)"
        + "|\\b(?:alert|prompt|confirm|eval)" + Sp + "*(?:\\(|%28|`|%60)"
        + "|document\\.(?:cookie|domain|write|location)|fromcharcode|expression\\s*\\("
        + "|url" + Sp + "*(?:\\(|%28)" + Sp + "*(?:javascript|vbscript))";

    static string Y(string regex) => "'~" + regex.Replace("'", "''", StringComparison.Ordinal) + "'";

    internal static string WafYaml => $$"""
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
        policies:
          out:
            default: deny
            rules:
              - deny: { url: {{Y(Sqli)}} }
                name: url-sqli
              - deny: { url: {{Y(Xss)}} }
                name: url-xss
              - deny: { path: '~(?i)(<|%3c)|\.\./' }
                name: path-odd
              - deny: { header: { Cookie: {{Y(Sqli)}} } }
                name: cookie-sqli
              - deny: { header: { Cookie: {{Y(Xss)}} } }
                name: cookie-xss
              - deny: { header: { Referer: {{Y(Xss)}} } }
                name: referer-xss
              - deny: { header: { Referer: {{Y(Sqli)}} } }
                name: referer-sqli
              - deny: { header: { User-Agent: {{Y(Xss)}} } }
                name: ua-xss
              - deny: { header: { User-Agent: {{Y(Sqli)}} } }
                name: ua-sqli
              - allow: { source: 127.0.0.0/8 }
                name: loopback
        """;

    [Fact]
    public async Task Regex_rules_block_crs_sqli_and_xss_samples_but_not_gotestwaf_false_positives()
    {
        var rows = CrsCorpus.Load();
        await using var sink = await SinkOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync(WafYaml);
        int port = gw.Port("web");
        var attacks = rows.Where(r => r.Cls == "attack" && r.RuleId / 1000 is 941 or 942)
            .Select(r => new WireRequest(r.Id, r.RuleId / 1000 == 941 ? "xss" : "sqli", CrsCorpus.ToWire(r, sink.Port), NoBody: r.Data is null))
            .ToList();
        var falsePositives = GoTestWafCorpus.Load().Where(p => p.Set == "false-pos").ToList();
        Assert.True(falsePositives.Count > 40, $"only {falsePositives.Count} false-positive texts");
        var benign = falsePositives.SelectMany(p => GoTestWafCorpus.Placements(p, sink.Port).Where(w => w.Family is "url" or "header")).ToList();

        var sw = Stopwatch.StartNew();
        var a = await Replay.RunAsync(port, attacks, 16, TimeSpan.FromSeconds(15));
        var b = await Replay.RunAsync(port, benign, 16, TimeSpan.FromSeconds(15));
        Assert.DoesNotContain(a.Concat(b), r => r.Answer is Answer.Hung or Answer.None);

        double Rate(IEnumerable<ReplayResult> rs) => rs.Any() ? (double)rs.Count(r => r.Status == 403) / rs.Count() : 0;
        var report = new List<string>();
        foreach (var fam in new[] { "xss", "sqli" })
        {
            var all = a.Where(r => r.Request.Family == fam).ToList();
            var noBody = all.Where(r => r.Request.NoBody).ToList();
            report.Add($"CRS {(fam == "xss" ? "941xxx XSS" : "942xxx SQLi")}: blocked {Rate(all):P0} of {all.Count} attack samples; {Rate(noBody):P0} of the {noBody.Count} without a body (rules see URL and headers, not bodies)");
        }
        report.Add($"gotestwaf false-pos: blocked {Rate(b):P1} of {b.Length} benign requests ({falsePositives.Count} texts in URL and header positions)");
        foreach (var line in report) output.WriteLine(line);
        foreach (var r in b.Where(r => r.Status == 403)) output.WriteLine($"  false positive: {r.Request.Id}");
        output.WriteLine($"in {sw.Elapsed.TotalSeconds:0.0}s");

        // Floors a little under what was measured (docs/robustness.md); not 100%: regexes on URLs are no WAF.
        Assert.True(Rate(a.Where(r => r.Request.Family == "xss" && r.Request.NoBody)) >= 0.50, report[0]);
        Assert.True(Rate(a.Where(r => r.Request.Family == "sqli" && r.Request.NoBody)) >= 0.25, report[1]);
        Assert.True(Rate(b) <= 0.10, report[2]);
    }
}
