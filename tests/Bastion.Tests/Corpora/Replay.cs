using System.Text;
using System.Text.Json;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Corpora;

/// <summary>One request of a corpus, as bytes on the wire to a forward proxy, and what came back.</summary>
/// <summary><paramref name="LogLines"/>: requests the gateway sees in these bytes (data left over after a request
/// on a kept-alive connection is a second, broken request, logged on its own).</summary>
public sealed record WireRequest(string Id, string Family, byte[] Bytes, bool NoBody = false, int LogLines = 1);

public enum Answer { Origin200, OriginOther, Gateway4xx, Gateway5xx, Tunnel, None, Hung }

public sealed record ReplayResult(WireRequest Request, RawClient.Result Raw, Answer Answer, int Status, string? Rule);

public static class Replay
{
    /// <summary>Sends every request on its own connection (half-closed after sending), a few at a time.</summary>
    public static async Task<ReplayResult[]> RunAsync(int port, IReadOnlyList<WireRequest> requests, int concurrency, TimeSpan deadline) =>
        await Bounded.MapAsync(requests, concurrency, async r =>
        {
            var raw = await RawClient.ExchangeAsync(port, r.Bytes, deadline);
            return Classify(r, raw);
        });

    static ReplayResult Classify(WireRequest r, RawClient.Result raw)
    {
        if (raw.TimedOut) return new(r, raw, Answer.Hung, 0, null);
        var statuses = RawClient.Statuses(raw.Response);
        if (statuses.Count == 0) return new(r, raw, Answer.None, 0, null);
        int status = statuses[0];
        var head = raw.Response.Split("\r\n\r\n", 2)[0];
        if (head.Contains("200 Connection established", StringComparison.Ordinal)) return new(r, raw, Answer.Tunnel, 200, null);
        // The gateway's own pages carry its request id; the origin's answers do not.
        if (head.Contains("\r\nX-Bastion-Request-Id:", StringComparison.OrdinalIgnoreCase))
            return new(r, raw, status >= 500 ? Answer.Gateway5xx : Answer.Gateway4xx, status, null);
        return new(r, raw, status == 200 ? Answer.Origin200 : Answer.OriginOther, status, null);
    }

    public static string Summary(IEnumerable<ReplayResult> results) =>
        string.Join(", ", results.GroupBy(r => r.Answer).OrderBy(g => g.Key).Select(g => $"{g.Key} {g.Count()}"));

    public static string StatusSummary(IEnumerable<ReplayResult> results, Answer which) =>
        string.Join(", ", results.Where(r => r.Answer == which).GroupBy(r => r.Status).OrderBy(g => g.Key).Select(g => $"{g.Key}×{g.Count()}"));

    /// <summary>
    /// Waits (with a deadline) until the access log holds at least <paramref name="expected"/> request lines and
    /// returns them. Lines are not matched to connections by client port: loopback reuses ports quickly.
    /// </summary>
    public static async Task<List<System.Text.Json.JsonElement>> RequestLinesAsync(TestGateway gw, int expected, TimeSpan timeout)
    {
        List<System.Text.Json.JsonElement> lines = [];
        try
        {
            await Wait.UntilAsync(() =>
            {
                lines = [.. gw.LogLines().Where(l => l.Str("event") == "request")];
                return lines.Count >= expected;
            }, timeout, $"{expected} request lines in the access log");
        }
        catch (TimeoutException)
        {
            // The caller's assertion reports the count.
        }
        return lines;
    }

    /// <summary>Checks the access log against what the clients saw: one line per request, statuses that match.</summary>
    public static async Task<string> CheckAccessLogAsync(TestGateway gw, IReadOnlyList<ReplayResult> results)
    {
        // A gateway refusal closes the connection: nothing after the refused request is read, or logged.
        int expected = results.Sum(r => r.Answer is Answer.Gateway4xx or Answer.Gateway5xx ? 1 : r.Request.LogLines);
        var lines = await RequestLinesAsync(gw, expected, TimeSpan.FromSeconds(30));
        Assert.Equal(expected, lines.Count);
        foreach (var g in results.Where(r => r.Answer != Answer.Tunnel).GroupBy(r => r.Status))
            Assert.True(lines.Count(l => l.Num("status") == g.Key) >= g.Count(), $"status {g.Key}: {g.Count()} answers but fewer log lines");
        return $"access log: {lines.Count} request lines for {results.Count} connections ({expected - results.Count} leftover second requests)";
    }

    /// <summary>Takes every k-th item so that at most <paramref name="max"/> remain: deterministic, spread over the corpus.</summary>
    public static List<T> Sample<T>(IReadOnlyList<T> all, int max)
    {
        if (all.Count <= max) return [.. all];
        var step = (double)all.Count / max;
        return [.. Enumerable.Range(0, max).Select(i => all[(int)(i * step)])];
    }
}

/// <summary>The CRS regression tests (go-ftw YAML, flattened to JSON lines) as raw proxy requests.</summary>
public static class CrsCorpus
{
    public sealed record Row(string Id, int RuleId, string Cls, string Method, string Uri, string Version,
        List<KeyValuePair<string, string>> Headers, string? Data, byte[]? Encoded, bool Autocomplete);

    public static List<Row> Load()
    {
        var path = Path.Combine(Corpus.Dir("crs-regression"), "derived", "crs-requests.jsonl");
        var rows = new List<Row>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.Length == 0) continue;
            var e = JsonDocument.Parse(line).RootElement;
            var headers = new List<KeyValuePair<string, string>>();
            if (e.TryGetProperty("headers", out var h) && h.ValueKind == JsonValueKind.Object)
                foreach (var p in h.EnumerateObject()) headers.Add(new(p.Name, p.Value.ToString()));
            string? S(string n) => e.TryGetProperty(n, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            var encoded = S("encoded_request") is { } b64 ? Convert.FromBase64String(b64) : null;
            bool auto = !e.TryGetProperty("autocomplete_headers", out var a) || a.ValueKind != JsonValueKind.False;
            rows.Add(new Row(S("id")!, e.GetProperty("rule_id").GetInt32(), S("cls") ?? "", S("method") ?? "GET", S("uri") ?? "/",
                S("version") ?? "HTTP/1.1", headers, S("data"), encoded, auto));
        }
        return rows;
    }

    /// <summary>
    /// go-ftw's request: request line, headers, blank line, data; with autocomplete it adds Content-Length (when
    /// there is data) and Connection: close. The target becomes absolute-form to the origin; CONNECT goes to the
    /// origin's port (never anywhere but loopback).
    /// </summary>
    /// <summary>Bytes left after the request's own framing, on a connection left open: a second request to the gateway.</summary>
    public static int Requests(Row r)
    {
        if (r.Encoded is not null || r.Data is not { Length: > 0 } data || r.Autocomplete) return 1;
        var cl = r.Headers.FirstOrDefault(p => p.Key.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)).Value;
        bool close = r.Headers.Any(p => p.Key.Equals("Connection", StringComparison.OrdinalIgnoreCase) && p.Value.Contains("close", StringComparison.OrdinalIgnoreCase));
        bool leftover = cl is null || (long.TryParse(cl, out var n) && n < System.Text.Encoding.UTF8.GetByteCount(data));
        return leftover && !close ? 2 : 1;
    }

    public static byte[] ToWire(Row r, int port)
    {
        if (r.Encoded is { } raw)
        {
            int eol = Array.IndexOf(raw, (byte)'\n');
            var first = Encoding.Latin1.GetString(raw, 0, eol < 0 ? raw.Length : eol);
            var parts = first.Split(' ');
            if (parts.Length >= 3) parts[1] = Target(parts[0], parts[1], port);
            var rewritten = Encoding.Latin1.GetBytes(string.Join(' ', parts));
            return [.. rewritten, .. eol < 0 ? [] : raw.AsSpan(eol)];
        }
        var data = r.Data is null ? [] : Encoding.UTF8.GetBytes(r.Data);
        var sb = new StringBuilder();
        sb.Append(r.Method).Append(' ').Append(Target(r.Method, r.Uri, port)).Append(' ').Append(r.Version).Append("\r\n");
        foreach (var (k, v) in r.Headers) sb.Append(k).Append(": ").Append(v).Append("\r\n");
        bool Has(string n) => r.Headers.Any(p => p.Key.Equals(n, StringComparison.OrdinalIgnoreCase));
        if (r.Autocomplete)
        {
            if (data.Length > 0 && !Has("Content-Length") && !Has("Transfer-Encoding")) sb.Append("Content-Length: ").Append(data.Length).Append("\r\n");
            if (!Has("Connection")) sb.Append("Connection: close\r\n");
        }
        sb.Append("\r\n");
        return [.. Encoding.UTF8.GetBytes(sb.ToString()), .. data];
    }

    static string Target(string method, string uri, int port)
    {
        if (method.Trim() == "CONNECT") return uri.Contains(':') ? $"127.0.0.1:{port}" : uri;
        if (uri.StartsWith('/')) return $"http://127.0.0.1:{port}{uri}";
        if (uri.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
        {
            int slash = uri.IndexOf('/', 7);
            return $"http://127.0.0.1:{port}{(slash < 0 ? "/" : uri[slash..])}";
        }
        return uri;
    }
}
