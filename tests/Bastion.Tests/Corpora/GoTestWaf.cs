using System.Diagnostics;
using System.Text;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;
using YamlDotNet.RepresentationModel;

namespace Bastion.Tests.Corpora;

/// <summary>GoTestWAF's payloads (testcases/**/*.yml): each placed in a URL, a header and a body.</summary>
public static class GoTestWafCorpus
{
    public sealed record Payload(string Set, string File, int Index, string Text)
    {
        public string Id => $"{Set}/{Path.GetFileNameWithoutExtension(File)}#{Index}";
    }

    public static List<Payload> Load()
    {
        var root = Path.Combine(Corpus.Dir("gotestwaf"), "testcases");
        var list = new List<Payload>();
        foreach (var file in Directory.GetFiles(root, "*.yml", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
        {
            var set = Path.GetRelativePath(root, file).Split(Path.DirectorySeparatorChar)[0];
            var payloads = Parse(File.ReadAllText(file));
            for (int i = 0; i < payloads.Count; i++) list.Add(new Payload(set, Path.GetFileName(file), i, payloads[i]));
        }
        return list;
    }

    /// <summary>The payload list. Go's YAML reader accepts "\'" in double quotes, YAML 1.2 does not: read those lines by hand.</summary>
    static List<string> Parse(string yaml)
    {
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(yaml));
            var map = (YamlMappingNode)stream.Documents[0].RootNode;
            if (map.Children.TryGetValue(new YamlScalarNode("payload"), out var node) && node is YamlSequenceNode seq)
                return [.. seq.Children.OfType<YamlScalarNode>().Select(s => s.Value ?? "")];
            return [];
        }
        catch (YamlDotNet.Core.YamlException)
        {
            var list = new List<string>();
            bool inPayload = false;
            foreach (var line in yaml.Split('\n'))
            {
                if (!line.StartsWith(' ')) inPayload = line.StartsWith("payload:", StringComparison.Ordinal);
                else if (inPayload && line.TrimStart().StartsWith("- ", StringComparison.Ordinal))
                {
                    var v = line.TrimStart()[2..].TrimEnd('\r');
                    if (v.Length >= 2 && v[0] == '\'' && v[^1] == '\'') v = v[1..^1].Replace("''", "'", StringComparison.Ordinal);
                    else if (v.Length >= 2 && v[0] == '"' && v[^1] == '"') v = Unescape(v[1..^1]);
                    list.Add(v);
                }
            }
            return list;
        }
    }

    static string Unescape(string s)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (s[i] != '\\' || i + 1 == s.Length) { sb.Append(s[i]); continue; }
            char c = s[++i];
            sb.Append(c switch { 'n' => '\n', 'r' => '\r', 't' => '\t', '0' => '\0', _ => c });
        }
        return sb.ToString();
    }

    /// <summary>The payload in a query parameter, a header (percent-encoded if it holds control characters) and a form body.</summary>
    public static IEnumerable<WireRequest> Placements(Payload p, int port)
    {
        var enc = Uri.EscapeDataString(p.Text);
        var origin = $"http://127.0.0.1:{port}";
        yield return new WireRequest($"{p.Id}@url", "url",
            Encoding.ASCII.GetBytes($"GET {origin}/get?q={enc} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
        var headerValue = p.Text.Any(c => c < 0x20 || c == 0x7f) ? enc : p.Text;
        yield return new WireRequest($"{p.Id}@header", "header",
            [.. Encoding.UTF8.GetBytes($"GET {origin}/get HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Payload: {headerValue}\r\nUser-Agent: {headerValue}\r\nConnection: close\r\n\r\n")]);
        var body = Encoding.UTF8.GetBytes($"q={enc}&raw={p.Text}");
        yield return new WireRequest($"{p.Id}@body", "body",
            [.. Encoding.ASCII.GetBytes($"POST {origin}/post HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"), .. body]);
    }
}

public sealed class GoTestWafCorpusTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Every_gotestwaf_payload_in_url_header_and_body_is_answered()
    {
        var payloads = GoTestWafCorpus.Load();
        Assert.True(payloads.Count > 150, $"only {payloads.Count} gotestwaf payloads");
        await using var sink = await SinkOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync(LlhttpCorpusTests.GatewayYaml);
        var requests = payloads.SelectMany(p => GoTestWafCorpus.Placements(p, sink.Port)).ToList();
        var sw = Stopwatch.StartNew();
        var results = await Replay.RunAsync(gw.Port("web"), requests, 16, TimeSpan.FromSeconds(15));
        output.WriteLine($"gotestwaf: {payloads.Count} payloads × 3 positions = {requests.Count} requests in {sw.Elapsed.TotalSeconds:0.0}s");
        foreach (var fam in new[] { "url", "header", "body" })
        {
            var rs = results.Where(r => r.Request.Family == fam).ToList();
            output.WriteLine($"  {fam,-6}: {Replay.Summary(rs)}; gateway 4xx: {Replay.StatusSummary(rs, Answer.Gateway4xx)}; origin non-200: {Replay.StatusSummary(rs, Answer.OriginOther)}");
        }
        foreach (var r in results.Where(r => r.Answer is not Answer.Origin200).Take(30))
            output.WriteLine($"  {r.Request.Id,-50} {r.Answer} {r.Status}");

        Assert.DoesNotContain(results, r => r.Answer is Answer.Hung or Answer.None or Answer.Gateway5xx);
        // Bodies of any content are opaque to the proxy: every one must reach the origin.
        Assert.All(results.Where(r => r.Request.Family == "body"), r => Assert.Equal(Answer.Origin200, r.Answer));
        // URLs and headers fail only on size (431/414-class limits), never on content.
        Assert.All(results.Where(r => r.Answer == Answer.Gateway4xx), r => Assert.True(r.Request.Bytes.Length > 8 * 1024, $"{r.Request.Id}: {r.Status}"));
        output.WriteLine(await Replay.CheckAccessLogAsync(gw, results));
    }
}
