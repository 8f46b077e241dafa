using System.Text;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Corpora;

/// <summary>
/// llhttp's request test cases (strict mode) end to end through a running gateway to an origin. The codec's
/// sans-I/O agreement with the same cases is <see cref="Codec.LlhttpCodecTests"/>.
/// </summary>
public sealed class LlhttpCorpusTests(ITestOutputHelper output)
{
    /// <summary>
    /// Where Bastion knowingly parts from llhttp. Keys are "file#heading". Every entry is one where Bastion is the
    /// stricter party, or llhttp's harness does something no bytes on a wire can (see docs/robustness.md).
    /// </summary>
    internal static Dictionary<string, string> Deliberate => Codec.LlhttpCodecTests.Deliberate;

    /// <summary>Cases whose meaning needs a lenient mode or a harness callback; not about the bytes alone.</summary>
    internal static bool Skipped(LlhttpCase c, out string why)
    {
        why = "";
        if (c.File.StartsWith("lenient", StringComparison.Ordinal)) why = "lenient-* file (non-strict modes)";
        else if (c.File == "pausing.md") why = "pausing (a harness callback)";
        else if (c.Type.StartsWith("request-lenient", StringComparison.Ordinal)) why = $"{c.Type} (non-strict mode)";
        else if (c.Meta.TryGetProperty("skipBody", out _)) why = "skipBody (a harness callback skips the body)";
        return why.Length > 0;
    }

    internal static string Key(LlhttpCase c) => $"{c.File}#{c.Name}";

    /// <summary>Errors about message length or line ends: the request-smuggling vectors. Never allow-listed.</summary>
    internal static bool IsFraming(string? reason) =>
        reason is not null && (reason.Contains("Content-Length", StringComparison.OrdinalIgnoreCase)
            || reason.Contains("Transfer-Encoding", StringComparison.OrdinalIgnoreCase)
            || reason.Contains("chunk", StringComparison.OrdinalIgnoreCase)
            || reason.Contains("LF", StringComparison.Ordinal) || reason.Contains("CR", StringComparison.Ordinal));

    static List<LlhttpCase> Cases(out int skipped)
    {
        var all = LlhttpCorpus.Load(Corpus.Dir("llhttp"));
        Assert.True(all.Count > 100, $"only {all.Count} llhttp cases parsed");
        var run = all.Where(c => !Skipped(c, out _)).ToList();
        skipped = all.Count - run.Count;
        return run;
    }

    /// <summary>End to end only: targets a forward proxy has nowhere to send.</summary>
    internal static readonly Dictionary<string, string> DeliberateEndToEnd = new()
    {
        ["method.md#M-SEARCH request"] = "asterisk-form target: a forward proxy needs an absolute URL",
        ["method.md#OPTIONS request with asterisk"] = "asterisk-form target: a forward proxy needs an absolute URL",
    };

    internal const string GatewayYaml = """
        listeners:
          - name: web
            type: http-proxy
            listen: 127.0.0.1:0
            policy: out
        policies:
          out:
            default: deny
            rules:
              - allow: { source: 127.0.0.0/8 }
                name: loopback
        """;

    static string ReverseYaml(int origin) => $$"""
        listeners:
          - name: web
            type: http-reverse
            listen: 127.0.0.1:0
            policy: out
            routes:
              - { path: "/{**rest}", upstream: "http://127.0.0.1:{{origin}}" }
        policies:
          out:
            default: deny
            rules:
              - allow: { source: 127.0.0.0/8 }
                name: loopback
        """;

    /// <summary>End to end only, reverse proxy: targets it does not serve.</summary>
    internal static readonly Dictionary<string, string> DeliberateReverse = new()
    {
        ["method.md#CONNECT request"] = "CONNECT is a forward proxy's: a reverse proxy answers 400",
        ["method.md#CONNECT request with CAPS"] = "CONNECT is a forward proxy's: a reverse proxy answers 400",
        ["method.md#CONNECT with body"] = "CONNECT is a forward proxy's: a reverse proxy answers 400",
        ["method.md#OPTIONS request with asterisk"] = "the asterisk-form target names no path to route: 400",
        ["uri.md#Underscore in hostname"] = "CONNECT is a forward proxy's: a reverse proxy answers 400",
        // Policy (issue 9): an upgrade passes only a rule that names it; this config's general allow does not (403).
        ["connection.md#Multiple tokens with folding and LWS"] = "an upgrade needs a rule naming it: 403",
        ["connection.md#Setting a flag and pausing"] = "an upgrade needs a rule naming it: 403",
        ["connection.md#Emitting part of body and pausing"] = "an upgrade needs a rule naming it: 403",
        ["connection.md#Upgrade GET request"] = "an upgrade needs a rule naming it: 403",
        ["connection.md#Upgrade POST request"] = "an upgrade needs a rule naming it: 403",
        // Policy (issue 9): the Host is the authority routed and judged; `0.0.0.0=5000` is no host name: 400.
        ["sample.md#curl GET"] = "Host `0.0.0.0=5000` is not a valid authority: 400",
        ["sample.md#Firefox GET"] = "Host `0.0.0.0=5000` is not a valid authority: 400",
    };

    [Theory]
    [InlineData("http-proxy")]
    [InlineData("http-reverse")]
    public async Task Gateway_never_forwards_what_llhttp_rejects_and_always_answers_or_closes(string type)
    {
        var cases = Cases(out _);
        await using var sink = await SinkOrigin.StartAsync();
        bool reverse = type == "http-reverse";
        await using var gw = await TestGateway.StartAsync(reverse ? ReverseYaml(sink.Port) : GatewayYaml);
        int port = gw.Port("web");
        var deadline = TimeSpan.FromSeconds(10);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        var results = await Bounded.MapAsync(cases.Select((c, i) => (c, i)).ToList(), 12, async item =>
        {
            var bytes = RewriteTargets(item.c, sink.Port, $"L{item.i}", addHost: true, originForm: reverse);
            return await RawClient.ExchangeAsync(port, bytes, deadline);
        });
        var elapsed = sw.Elapsed;

        var table = new StringBuilder();
        int agree = 0, deliberate = 0;
        var problems = new List<string>();
        for (int i = 0; i < cases.Count; i++)
        {
            var c = cases[i];
            var r = results[i];
            var expected = c.Expected;
            var statuses = RawClient.Statuses(r.Response);
            int tunnels = r.Response.Contains("200 Connection established", StringComparison.Ordinal) ? 1 : 0;
            int delivered = sink.DeliveredFor($"L{i}") + tunnels;
            string verdict;
            if (r.TimedOut)
            {
                verdict = "HUNG";
                problems.Add($"{Key(c)}: no answer and no close within {deadline.TotalSeconds}s");
            }
            else if (delivered == expected.Messages) { verdict = "agree"; agree++; }
            else if (delivered > expected.Messages && expected.Rejected && IsFraming(expected.Error))
            {
                verdict = "FORWARDED-FRAMING-ERROR";
                problems.Add($"{Key(c)}: llhttp rejects ({expected.Error}) but {delivered} request(s) reached the origin");
            }
            else if (Deliberate.TryGetValue(Key(c), out var why) || (reverse ? DeliberateReverse : DeliberateEndToEnd).TryGetValue(Key(c), out why))
            {
                verdict = $"deliberate: {why}";
                deliberate++;
            }
            else
            {
                verdict = "DISAGREE";
                problems.Add($"{Key(c)}: llhttp completes {expected.Messages} ({expected.Error}), origin got {delivered}; answers [{string.Join(",", statuses)}]");
            }
            table.AppendLine($"{c.Id,-22} {Trunc(c.Name, 48),-48} llhttp M{expected.Messages}{(expected.Rejected ? " ERR" : "    ")} delivered {delivered} answers [{string.Join(",", statuses)}]{(r.Reset ? " reset" : "")} {verdict}");
        }
        output.WriteLine($"end to end: {cases.Count} cases in {elapsed.TotalSeconds:0.0}s: {agree} agree, {deliberate} deliberate differences, {problems.Count} problems");
        output.WriteLine(table.ToString());

        // Still alive and serving after all of it.
        var ok = await RawClient.ExchangeAsync(port, Encoding.ASCII.GetBytes($"GET {(reverse ? "" : $"http://127.0.0.1:{sink.Port}")}/k/alive HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), deadline);
        Assert.StartsWith("HTTP/1.1 200", ok.Response);
        Assert.True(problems.Count == 0, "end-to-end problems:\n" + string.Join("\n", problems));
    }

    /// <summary>
    /// Points each request target llhttp found (its span[url] offsets) at the sink origin, keeping the rest of the
    /// bytes as they are: origin-form and absolute-form become http://127.0.0.1:port/k/key..., CONNECT goes to the
    /// origin's port, and '*' stays. With <paramref name="addHost"/>, `Host: x` follows the request line of each
    /// message that has none (as <see cref="Codec.LlhttpCodecTests.WithHost"/>), since HTTP/1.1 requires it.
    /// </summary>
    internal static byte[] RewriteTargets(LlhttpCase c, int port, string key, bool addHost = false, bool originForm = false)
    {
        var input = c.Input;
        var edits = new List<(int Offset, int Remove, byte[] Insert)>();
        foreach (var span in c.UrlSpans())
        {
            Assert.True(span.Offset + span.Length <= input.Length, $"{c.Id}: url span out of range");
            var url = input.AsSpan(span.Offset, span.Length);
            var prefix = originForm ? $"/k/{key}" : $"http://127.0.0.1:{port}/k/{key}";
            byte[] replacement;
            if (url.Length > 0 && url[0] == (byte)'/') replacement = [.. Encoding.ASCII.GetBytes(prefix), .. url];
            else if (url.StartsWith("http://"u8))
            {
                var rest = url[7..];
                int end = rest.IndexOfAny("/?#"u8);
                var authority = end < 0 ? rest : rest[..end];
                int at = authority.LastIndexOf((byte)'@');
                var tail = end < 0 ? [] : rest[end..].ToArray();
                // A reverse proxy keeps the authority (routes match any host); a forward proxy's goes to the sink. Userinfo stays.
                var head = originForm ? Encoding.ASCII.GetBytes($"http://{Encoding.ASCII.GetString(authority[(at + 1)..])}/k/{key}") : Encoding.ASCII.GetBytes(prefix);
                replacement = at >= 0 ? [.. "http://"u8, .. authority[..(at + 1)], .. head.AsSpan(7), .. tail] : [.. head, .. tail];
            }
            else if (url.SequenceEqual("*"u8)) replacement = [.. url];
            else replacement = Encoding.ASCII.GetBytes($"127.0.0.1:{port}");
            edits.Add((span.Offset, span.Length, replacement));
        }
        if (addHost)
            foreach (int at in Codec.LlhttpCodecTests.HostInsertions(c)) edits.Add((at, 0, "Host: x\r\n"u8.ToArray()));
        var output = new List<byte>(input.Length + 64);
        int pos = 0;
        foreach (var (offset, remove, insert) in edits.OrderBy(e => e.Offset).ThenBy(e => e.Remove))
        {
            output.AddRange(input.AsSpan(pos, offset - pos));
            output.AddRange(insert);
            pos = offset + remove;
        }
        output.AddRange(input.AsSpan(pos));
        return [.. output];
    }

    static string Trunc(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
