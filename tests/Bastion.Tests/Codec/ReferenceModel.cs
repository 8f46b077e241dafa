using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Bastion.Protocols.Http.Codec;

namespace Bastion.Tests.Codec;

/// <summary>
/// The request rules of issue 14 written a second time, plainly (strings and regexes, line by line), so that the
/// codec can be checked against something it does not share code with. Only complete heads are judged.
/// </summary>
public static partial class ReferenceModel
{
    /// <summary>Status 0: accepted with the framing given. NeedMore: the head is not complete in the input.</summary>
    public sealed record Verdict(int Status, BodyKind Kind = BodyKind.None, long Length = 0, bool NeedMore = false)
    {
        public override string ToString() => NeedMore ? "need-more" : Status != 0 ? $"{Status}" : $"ok {Kind} {Length}";
    }

    const string Tchar = @"!#$%&'*+\-.^_`|~0-9A-Za-z";

    public static Verdict Request(byte[] input)
    {
        var s = Encoding.Latin1.GetString(input);
        while (s.StartsWith("\r\n", StringComparison.Ordinal)) s = s[2..];
        // Line by line, each judged as soon as it is complete (as a server reading the wire would).
        string method = "", target = "", version = "";
        var fields = new List<(string Name, string Value)>();
        int pos = 0;
        bool first = true, complete = false;
        while (true)
        {
            int lf = s.IndexOf('\n', pos);
            if (lf < 0) break;
            var line = s[pos..lf];
            if (!line.EndsWith('\r')) return new(400);           // bare LF
            line = line[..^1];
            if (line.Contains('\r')) return new(400);            // bare CR
            pos = lf + 1;
            if (first)
            {
                var rl = RequestLine().Match(line);
                if (!rl.Success) return new(400);
                method = rl.Groups[1].Value;
                target = rl.Groups[2].Value;
                version = rl.Groups[3].Value;
                if (version is not ("1.1" or "1.0")) return new(505);
                first = false;
                continue;
            }
            if (line.Length == 0) { complete = true; break; }
            var m = FieldLine().Match(line);
            if (!m.Success) return new(400);
            var value = m.Groups[2].Value.Trim(' ', '\t');
            if (value.Any(c => (c < 0x20 && c != '\t') || c == 0x7f)) return new(400);
            fields.Add((m.Groups[1].Value.ToLowerInvariant(), value));
        }
        if (!complete) return new(0, NeedMore: true);

        if (fields.Count > RequestParser.DefaultMaxFields) return new(431);

        var hosts = fields.Where(f => f.Name == "host").ToList();
        if (hosts.Count > 1 || (hosts.Count == 0 && version == "1.1")) return new(400);
        if (hosts.Count == 1 && !ValidAuthority(hosts[0].Value, allowEmpty: true)) return new(400);

        if (method == "CONNECT")
        {
            var a = AuthorityRe().Match(target);
            if (!ValidAuthority(target, allowEmpty: false) || !a.Groups[2].Success || a.Groups[2].Value.Length < 2
                || int.Parse(a.Groups[2].Value[1..], CultureInfo.InvariantCulture) == 0) return new(400);
        }
        else if (target.StartsWith('/')) { }
        else if (target == "*") { if (method != "OPTIONS") return new(400); }
        else
        {
            var abs = AbsoluteForm().Match(target);
            if (!abs.Success || !ValidAuthority(abs.Groups[1].Value, allowEmpty: false)) return new(400);
        }

        var te = fields.Where(f => f.Name == "transfer-encoding").Select(f => f.Value).ToList();
        var cl = fields.Where(f => f.Name == "content-length").Select(f => f.Value).ToList();
        var result = new Verdict(0);
        if (te.Count > 0)
        {
            if (version == "1.0" || cl.Count > 0) return new(400);
            var codings = te.SelectMany(v => v.Split(',')).Select(c => c.Trim(' ', '\t')).ToList();
            if (codings.Any(c => c.Length == 0 || !Token().IsMatch(c))) return new(400);
            var chunked = codings.Where(c => c.Equals("chunked", StringComparison.OrdinalIgnoreCase)).Count();
            if (chunked != 1 || !codings[^1].Equals("chunked", StringComparison.OrdinalIgnoreCase)) return new(400);
            if (codings.Count > 1) return new(501);
            result = new Verdict(0, BodyKind.Chunked);
        }
        else if (cl.Count > 0)
        {
            var values = cl.SelectMany(v => v.Split(',')).Select(c => c.Trim(' ', '\t')).ToList();
            if (values.Any(v => v.Length == 0 || v.Length > 18 || !v.All(char.IsAsciiDigit))) return new(400);
            var n = values.Select(v => long.Parse(v, CultureInfo.InvariantCulture)).Distinct().ToList();
            if (n.Count > 1) return new(400);
            result = n[0] == 0 ? new Verdict(0) : new Verdict(0, BodyKind.Length, n[0]);
        }
        foreach (var c in fields.Where(f => f.Name == "connection").SelectMany(f => f.Value.Split(',')).Select(t => t.Trim(' ', '\t')))
            if (c.Length > 0 && !Token().IsMatch(c)) return new(400);
        return result;
    }

    static bool ValidAuthority(string a, bool allowEmpty)
    {
        if (a.Contains('@')) return false;
        var m = AuthorityRe().Match(a);
        if (!m.Success) return false;
        if (!allowEmpty && m.Groups[1].Value.Length == 0) return false;
        if (m.Groups[1].Value.Length == 0 && m.Groups[2].Success) return false;
        if (m.Groups[2].Success && m.Groups[2].Value.Length > 1 && int.Parse(m.Groups[2].Value[1..], CultureInfo.InvariantCulture) > 65535) return false;
        return true;
    }

    [GeneratedRegex($"^([{Tchar}]+) ([\\x21-\\x7e]+) HTTP/([0-9]\\.[0-9])$")]
    private static partial Regex RequestLine();

    [GeneratedRegex($"^([{Tchar}]+):(.*)$", RegexOptions.Singleline)]
    private static partial Regex FieldLine();

    [GeneratedRegex($"^[{Tchar}]+$")]
    private static partial Regex Token();

    [GeneratedRegex(@"^(\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~!$&'()*+;=]|%[0-9A-Fa-f]{2})*)(:[0-9]{0,5})?$")]
    private static partial Regex AuthorityRe();

    [GeneratedRegex(@"^[A-Za-z][A-Za-z0-9+\-.]*://([^/?#]*)(.*)$", RegexOptions.Singleline)]
    private static partial Regex AbsoluteForm();
}
