using System.Text;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Corpora;

/// <summary>
/// llhttp's request test cases (strict mode) against Bastion's own HTTP/1.1 front end: first sans-I/O (head parser,
/// framing check, body decoder), then end to end through a running gateway to an origin.
/// </summary>
public sealed class LlhttpCorpusTests(ITestOutputHelper output)
{
    /// <summary>
    /// Where Bastion knowingly parts from llhttp. Keys are "file#heading". Every entry is one where Bastion is the
    /// stricter party, or llhttp's harness does something no bytes on a wire can (see docs/robustness.md).
    /// </summary>
    internal static readonly Dictionary<string, string> Deliberate = new()
    {
        ["invalid.md#HTTP protocol and ANNOUNCE method"] = "any token is a method (RFC 9110 §9.1); llhttp knows a fixed list",
        ["invalid.md#Invalid method"] = "any token is a method (RFC 9110 §9.1); llhttp knows a fixed list",
        ["method.md#SOURCE request with ICE"] = "HTTP/1.0 and HTTP/1.1 only; llhttp also speaks ICE and RTSP",
        ["method.md#OPTIONS request with RTSP"] = "HTTP/1.0 and HTTP/1.1 only; llhttp also speaks ICE and RTSP",
        ["method.md#ANNOUNCE request with RTSP"] = "HTTP/1.0 and HTTP/1.1 only; llhttp also speaks ICE and RTSP",
        ["sample.md#No HTTP version"] = "HTTP/0.9 request lines are refused",
        ["method.md#PRI request HTTP2"] = "PRI is an extension method to the HTTP/1 parser; the gateway refuses its '*' target",
        ["transfer-encoding.md#POST with `chunked` as last transfer-encoding"] = "only 'chunked' alone: a coding the proxy cannot decode is refused (501), not passed on",
        ["transfer-encoding.md#POST with `chunked` as last transfer-encoding (multiple headers)"] = "only 'chunked' alone: a coding the proxy cannot decode is refused (501), not passed on",
    };

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

    [Fact]
    public async Task Sans_io_parser_agrees_with_llhttp_strict()
    {
        var cases = Cases(out int skipped);
        var table = new StringBuilder();
        int agree = 0, later = 0, deliberate = 0;
        var disagreements = new List<string>();
        foreach (var c in cases)
        {
            var expected = c.Expected;
            var got = await SansIo.RunAsync(c.Input).WaitAsync(TimeSpan.FromSeconds(5));
            string verdict;
            if (got.Trace.SameAs(expected)) { verdict = "agree"; agree++; }
            else if (expected.Rejected && !got.Trace.Rejected && got.Trace.Messages == expected.Messages && got.Detail.StartsWith("incomplete", StringComparison.Ordinal))
            {
                // llhttp fails at the bad byte; Bastion judges the head (or chunk line) once whole, which this input never is.
                verdict = "agree at end of input";
                later++;
            }
            else if (Deliberate.TryGetValue(Key(c), out var why)) { verdict = $"deliberate: {why}"; deliberate++; }
            else
            {
                verdict = "DISAGREE";
                disagreements.Add($"{Key(c)}: llhttp {expected} ({expected.Error}) vs bastion {got.Trace} ({got.Detail})");
            }
            table.AppendLine($"{c.Id,-22} {Trunc(c.Name, 52),-52} llhttp {expected,-10} bastion {got.Trace,-10} {got.Status,3} {verdict}");
        }
        output.WriteLine($"llhttp request cases: {cases.Count} run, {skipped} skipped (lenient modes, pausing, skipBody)");
        output.WriteLine($"sans-I/O agreement: {agree} agree, {later} agree once the input ends, {deliberate} deliberate differences, {disagreements.Count} disagreements");
        output.WriteLine(table.ToString());
        Assert.True(disagreements.Count == 0, "disagreements with llhttp:\n" + string.Join("\n", disagreements));
    }

    static string Trunc(string s, int n) => s.Length <= n ? s : s[..(n - 1)] + "…";
}
