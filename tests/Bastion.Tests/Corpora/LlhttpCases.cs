using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace Bastion.Tests.Corpora;

/// <summary>What a parser made of a byte stream: heads accepted (H), messages completed (M), then an error or not.</summary>
public sealed record Trace(int Heads, int Messages, string? Error)
{
    public bool Rejected => Error is not null;
    public override string ToString() => $"H{Heads} M{Messages}{(Error is null ? "" : " ERR")}";
    /// <summary>Same messages accepted and same verdict. Heads count only when neither rejected: a bad
    /// Transfer-Encoding is an error after the head for llhttp and a refused head for Bastion.</summary>
    public bool SameAs(Trace o) => Messages == o.Messages && Rejected == o.Rejected && (Rejected || Heads == o.Heads);
}

/// <summary>A URL span llhttp reported: where the request target sits in the input.</summary>
public readonly record struct UrlSpan(int Offset, int Length);

/// <summary>One request case of llhttp's markdown test suite (test/request/*.md).</summary>
public sealed partial record LlhttpCase(string File, int Line, string Name, string Type, JsonElement Meta, byte[] Input, string Log)
{
    public string Id => $"{Path.GetFileNameWithoutExtension(File)}:{Line}";

    /// <summary>llhttp's verdict from its log. A pause on CONNECT/Upgrade (code 22) is a completed message, not an error.</summary>
    public Trace Expected
    {
        get
        {
            int heads = 0, messages = 0;
            foreach (var line in Log.Split('\n'))
            {
                if (line.Contains(" headers complete ", StringComparison.Ordinal)) heads++;
                else if (line.EndsWith(" message complete", StringComparison.Ordinal)) messages++;
                var m = ErrorLine().Match(line);
                if (m.Success)
                    return m.Groups[1].Value == "22" ? new Trace(heads, messages, null) : new Trace(heads, messages, m.Groups[2].Value);
            }
            return new Trace(heads, messages, null);
        }
    }

    public string? ErrorCode => ErrorLine().Match(Log) is { Success: true } m ? m.Groups[1].Value : null;

    /// <summary>Target positions (byte offsets into <see cref="Input"/>), from the log's span[url] lines.</summary>
    public List<UrlSpan> UrlSpans()
    {
        var list = new List<UrlSpan>();
        foreach (Match m in UrlLine().Matches(Log))
            list.Add(new(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture)));
        return list;
    }

    [GeneratedRegex("""error code=(\d+) reason="(.*)"$""")]
    private static partial Regex ErrorLine();

    [GeneratedRegex("""off=(\d+) len=(\d+) span\[url\]=""")]
    private static partial Regex UrlLine();
}

public static partial class LlhttpCorpus
{
    /// <summary>
    /// All request cases. Each is a heading, a `&lt;!-- meta={...} --&gt;` comment, an ```http block and a ```log block.
    /// The http block becomes bytes the way llhttp's harness (test/md-test.ts) does it.
    /// </summary>
    public static List<LlhttpCase> Load(string dir, string kind = "request")
    {
        var cases = new List<LlhttpCase>();
        foreach (var file in Directory.GetFiles(Path.Combine(dir, "test", kind), "*.md").Order(StringComparer.Ordinal))
        {
            var lines = System.IO.File.ReadAllLines(file);
            string heading = "";
            for (int i = 0; i < lines.Length; i++)
            {
                if (lines[i].StartsWith('#')) heading = lines[i].TrimStart('#').Trim();
                var meta = MetaLine().Match(lines[i]);
                if (!meta.Success) continue;
                int metaLine = i + 1;
                var http = Fence(lines, ref i, "```http");
                var log = Fence(lines, ref i, "```log");
                if (http is null || log is null) throw new InvalidDataException($"{file}:{metaLine}: meta without http and log blocks");
                var metaJson = JsonDocument.Parse(meta.Groups[1].Value).RootElement.Clone();
                cases.Add(new LlhttpCase(Path.GetFileName(file), metaLine, heading, metaJson.GetProperty("type").GetString()!, metaJson, ToBytes(http), log));
            }
        }
        return cases;
    }

    /// <summary>The fenced block that opens next, with its final newline (as mdgator gives it).</summary>
    static string? Fence(string[] lines, ref int i, string open)
    {
        while (++i < lines.Length && lines[i].TrimEnd() != open) { }
        if (i >= lines.Length) return null;
        var sb = new StringBuilder();
        while (++i < lines.Length && lines[i] != "```") sb.Append(lines[i]).Append('\n');
        return sb.ToString();
    }

    /// <summary>md-test.ts: drop the final newline and escaped newlines, make every newline CRLF, then expand escapes.</summary>
    public static byte[] ToBytes(string block)
    {
        var s = block.EndsWith('\n') ? block[..^1] : block;
        s = EscapedNewline().Replace(s, "");
        s = AnyNewline().Replace(s, "\r\n");
        s = s.Replace("\\r", "\r", StringComparison.Ordinal).Replace("\\n", "\n", StringComparison.Ordinal)
             .Replace("\\t", "\t", StringComparison.Ordinal).Replace("\\f", "\f", StringComparison.Ordinal);
        s = HexEscape().Replace(s, m => ((char)(ulong.Parse(m.Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) & 0xffff)).ToString());
        s = OctalEscape().Replace(s, m => ((char)Convert.ToInt32(m.Groups[1].Value, 8)).ToString());
        if (s.Contains("${", StringComparison.Ordinal)) throw new NotSupportedException("inline JavaScript in an llhttp case");
        // The harness hands the string over as UTF-8 (its logs count \xff as two bytes).
        return Encoding.UTF8.GetBytes(s);
    }

    [GeneratedRegex("^<!-- meta=(\\{.*\\}) -->$")]
    private static partial Regex MetaLine();

    [GeneratedRegex("\\\\(\\r\\n|\\r|\\n)")]
    private static partial Regex EscapedNewline();

    [GeneratedRegex("\\r\\n|\\r|\\n")]
    private static partial Regex AnyNewline();

    [GeneratedRegex("\\\\x([0-9a-fA-F]+)")]
    private static partial Regex HexEscape();

    [GeneratedRegex("\\\\([0-7]{1,3})")]
    private static partial Regex OctalEscape();
}
