using System.Text;
using System.Text.RegularExpressions;
using Bastion.Tests.Corpora;
using Xunit.Abstractions;

namespace Bastion.Tests.Codec;

/// <summary>
/// llhttp's strict request and response cases against the codec. Requests run twice: as they are (many omit Host,
/// which RFC 9112 §3.2 requires on HTTP/1.1: a deliberate difference), and with `Host: x` added to each message
/// that has none, so that every other rule is compared on the same bytes.
/// </summary>
public sealed partial class LlhttpCodecTests(ITestOutputHelper output)
{
    /// <summary>Where the codec knowingly parts from llhttp ("file#heading" → why). The test fails when one stops differing.</summary>
    internal static readonly Dictionary<string, string> Deliberate = new()
    {
        ["invalid.md#Invalid method"] = "any token is a method (RFC 9110 §9.1); llhttp knows a fixed list",
        ["method.md#SOURCE request with ICE"] = "HTTP/1.0 and HTTP/1.1 only; llhttp also speaks ICE and RTSP",
        ["method.md#OPTIONS request with RTSP"] = "HTTP/1.0 and HTTP/1.1 only; llhttp also speaks ICE and RTSP",
        ["method.md#ANNOUNCE request with RTSP"] = "HTTP/1.0 and HTTP/1.1 only; llhttp also speaks ICE and RTSP",
        ["sample.md#No HTTP version"] = "HTTP/0.9 request lines are refused",
        ["transfer-encoding.md#POST with `chunked` as last transfer-encoding"] = "only 'chunked' alone: a coding the proxy cannot decode is refused (501), not passed on",
        ["transfer-encoding.md#POST with `chunked` as last transfer-encoding (multiple headers)"] = "only 'chunked' alone: a coding the proxy cannot decode is refused (501), not passed on",
        ["method.md#M-SEARCH request"] = "the asterisk-form target is for OPTIONS only (RFC 9112 §3.2.4)",
        ["uri.md#`host:port` and basic auth"] = "userinfo in a request target is refused (issue 14)",
    };

    internal static readonly Dictionary<string, string> DeliberateResponses = new()
    {
        ["connection.md#HTTP 101 response with Upgrade and Content-Length header"] = "1xx responses may not announce a body (RFC 9110 §8.6, RFC 9112 §6.1): 502",
        ["connection.md#HTTP 101 response with Upgrade and Transfer-Encoding header"] = "1xx responses may not announce a body (RFC 9110 §8.6, RFC 9112 §6.1): 502",
        ["sample.md#RTSP response"] = "HTTP/1.0 and HTTP/1.1 only",
        ["sample.md#ICE response"] = "HTTP/1.0 and HTTP/1.1 only",
        ["sample.md#HTTP version 0.9"] = "HTTP/1.0 and HTTP/1.1 only",
        ["transfer-encoding.md#`chunked` before other transfer-encoding"] = "Transfer-Encoding must be exactly chunked, both directions: anything else is a 502, not a close-delimited body",
        ["transfer-encoding.md#multiple transfer-encoding where chunked is not the last one"] = "Transfer-Encoding must be exactly chunked, both directions: anything else is a 502, not a close-delimited body",
        ["transfer-encoding.md#`chunkedchunked` transfer-encoding does not enable chunked enconding"] = "Transfer-Encoding must be exactly chunked, both directions: anything else is a 502, not a close-delimited body",
    };

    static bool Skipped(LlhttpCase c) =>
        c.File.StartsWith("lenient", StringComparison.Ordinal) || c.File == "pausing.md"
        || c.Type.Contains("lenient", StringComparison.Ordinal) || c.Type == "response-finish"
        || c.Meta.TryGetProperty("skipBody", out _) || c.Meta.TryGetProperty("pause", out _);

    [Fact]
    public void Requests_as_they_are_never_frame_more_than_llhttp()
    {
        var cases = LlhttpCorpus.Load(Corpus.Dir("llhttp")).Where(c => !Skipped(c)).ToList();
        Assert.True(cases.Count > 100);
        var problems = new List<string>();
        int hostRule = 0;
        foreach (var c in cases)
        {
            var got = CodecSansIo.Requests(c.Input);
            var expected = c.Expected;
            if (expected.Rejected && LlhttpCorpusTests.IsFraming(expected.Error) && got.Trace.Messages > expected.Messages)
                problems.Add($"{LlhttpCorpusTests.Key(c)}: FRAMING: llhttp refuses ({expected.Error}) after {expected.Messages}, codec accepted {got.Trace.Messages}");
            if (got.Detail.Contains("without a Host", StringComparison.Ordinal)) hostRule++;
        }
        output.WriteLine($"{cases.Count} cases; {hostRule} refused for lacking Host (RFC 9112 §3.2)");
        Assert.True(problems.Count == 0, string.Join("\n", problems));
    }

    [Fact]
    public void Requests_with_host_added_agree_with_llhttp_strict()
    {
        var cases = LlhttpCorpus.Load(Corpus.Dir("llhttp")).Where(c => !Skipped(c)).ToList();
        var table = new StringBuilder();
        var disagreements = new List<string>();
        var used = new HashSet<string>();
        int agree = 0, later = 0, deliberate = 0;
        foreach (var c in cases)
        {
            var input = WithHost(c);
            var got = CodecSansIo.Requests(input);
            var expected = c.Expected;
            var key = LlhttpCorpusTests.Key(c);
            if (expected.Rejected && LlhttpCorpusTests.IsFraming(expected.Error) && got.Trace.Messages > expected.Messages)
                disagreements.Add($"{key}: FRAMING: llhttp refuses ({expected.Error}) after {expected.Messages}, codec accepted {got.Trace.Messages}");
            string verdict;
            if (got.Trace.SameAs(expected)) { verdict = "agree"; agree++; }
            else if (expected.Rejected && !got.Trace.Rejected && got.Trace.Messages == expected.Messages && got.Detail.StartsWith("incomplete", StringComparison.Ordinal))
            {
                verdict = "agree at end of input";
                later++;
            }
            else if (Deliberate.TryGetValue(key, out var why))
            {
                verdict = $"deliberate: {why}";
                deliberate++;
                used.Add(key);
            }
            else
            {
                verdict = "DISAGREE";
                disagreements.Add($"{key}: llhttp {expected} ({expected.Error}) vs codec {got.Trace} ({got.Detail})");
            }
            table.AppendLine($"{c.Id,-22} {c.Name,-52} llhttp {expected,-10} codec {got.Trace,-10} {got.Status,3} {verdict}");
        }
        output.WriteLine($"requests: {cases.Count}: {agree} agree, {later} agree once the input ends, {deliberate} deliberate, {disagreements.Count} disagreements");
        output.WriteLine(table.ToString());
        Assert.True(disagreements.Count == 0, string.Join("\n", disagreements));
        Assert.Empty(Deliberate.Keys.Except(used));
    }

    [Fact]
    public void Responses_agree_with_llhttp_strict()
    {
        var cases = LlhttpCorpus.Load(Corpus.Dir("llhttp"), "response").Where(c => !Skipped(c)).ToList();
        Assert.True(cases.Count > 40, $"{cases.Count} response cases");
        var table = new StringBuilder();
        var disagreements = new List<string>();
        var used = new HashSet<string>();
        int agree = 0, later = 0, deliberate = 0;
        foreach (var c in cases)
        {
            var got = CodecSansIo.Responses(c.Input);
            var expected = c.Expected;
            var key = LlhttpCorpusTests.Key(c);
            if (expected.Rejected && LlhttpCorpusTests.IsFraming(expected.Error) && got.Trace.Messages > expected.Messages)
                disagreements.Add($"{key}: FRAMING: llhttp refuses ({expected.Error}) after {expected.Messages}, codec accepted {got.Trace.Messages}");
            string verdict;
            if (got.Trace.SameAs(expected)) { verdict = "agree"; agree++; }
            else if (!got.Trace.Rejected && got.Trace.Messages == expected.Messages + 1 && got.Detail is "end" or "close" && !expected.Rejected)
            {
                // A close-delimited body: complete when the server closes, which llhttp's harness never reports.
                verdict = "agree at close";
                later++;
            }
            else if (expected.Rejected && !got.Trace.Rejected && got.Trace.Messages == expected.Messages && got.Detail.StartsWith("incomplete", StringComparison.Ordinal))
            {
                verdict = "agree at end of input";
                later++;
            }
            else if (DeliberateResponses.TryGetValue(key, out var why))
            {
                verdict = $"deliberate: {why}";
                deliberate++;
                used.Add(key);
            }
            else
            {
                verdict = "DISAGREE";
                disagreements.Add($"{key}: llhttp {expected} ({expected.Error}) vs codec {got.Trace} ({got.Detail})");
            }
            table.AppendLine($"{c.Id,-22} {c.Name,-52} llhttp {expected,-10} codec {got.Trace,-10} {got.Status,3} {verdict}");
        }
        output.WriteLine($"responses: {cases.Count}: {agree} agree, {later} agree at close/end of input, {deliberate} deliberate, {disagreements.Count} disagreements");
        output.WriteLine(table.ToString());
        Assert.True(disagreements.Count == 0, string.Join("\n", disagreements));
        Assert.Empty(DeliberateResponses.Keys.Except(used));
    }

    /// <summary>
    /// The case's bytes with `Host: x` after the request line of each message that has no Host field (llhttp's log
    /// says where messages begin and which fields they have). Requests whose request line does not end in CRLF stay as they are.
    /// </summary>
    internal static byte[] WithHost(LlhttpCase c)
    {
        var input = c.Input;
        var output = new List<byte>(input.Length + 32);
        int copied = 0;
        foreach (int at in HostInsertions(c))
        {
            output.AddRange(input.AsSpan(copied, at - copied));
            output.AddRange("Host: x\r\n"u8);
            copied = at;
        }
        output.AddRange(input.AsSpan(copied));
        return [.. output];
    }

    /// <summary>Where `Host: x\r\n` goes: just after the request line of each message without a Host field.</summary>
    internal static List<int> HostInsertions(LlhttpCase c)
    {
        var begins = MessageBegin().Matches(c.Log).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        var hosts = HostField().Matches(c.Log).Select(m => int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        var input = c.Input;
        var at = new List<int>();
        for (int k = 0; k < begins.Count; k++)
        {
            int begin = begins[k], next = k + 1 < begins.Count ? begins[k + 1] : input.Length;
            if (hosts.Any(h => h >= begin && h < next)) continue;
            int lf = Array.IndexOf(input, (byte)'\n', begin);
            if (lf < 0 || lf >= next || input[lf - 1] != (byte)'\r') continue;
            at.Add(lf + 1);
        }
        return at;
    }

    [GeneratedRegex(@"^off=(\d+) message begin", RegexOptions.Multiline)]
    private static partial Regex MessageBegin();

    [GeneratedRegex(@"^off=(\d+) len=\d+ span\[header_field\]=""[Hh][Oo][Ss][Tt]""", RegexOptions.Multiline)]
    private static partial Regex HostField();
}
