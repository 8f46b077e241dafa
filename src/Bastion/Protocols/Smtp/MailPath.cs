using System.Globalization;
using System.Text;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// An envelope address (RFC 5321 4.1.2 Path) as the gateway forwards it: local part as received, domain lowercased
/// and in punycode (IDN), the source route only when the listener allows routes. <see cref="Address"/> is what the
/// policy sees (`local@domain`, empty for the null sender).
/// </summary>
public sealed record MailPath(string LocalPart, string Domain, string? Route)
{
    public static readonly MailPath Null = new("", "", null);

    public bool IsNull => LocalPart.Length == 0 && Domain.Length == 0;

    /// <summary>`local@domain` (`Postmaster` alone for RCPT TO:&lt;Postmaster&gt;), or "" for &lt;&gt;.</summary>
    public string Address => IsNull ? "" : Domain.Length == 0 ? LocalPart : $"{LocalPart}@{Domain}";

    /// <summary>The path as written to the server: `&lt;local@domain&gt;`, with the route when kept.</summary>
    public string Wire => Route is null ? $"<{Address}>" : $"<{Route}:{Address}>";

    public override string ToString() => Wire;
}

/// <summary>Why an address was refused; the session turns it into 501 (syntax) or 553 (not allowed).</summary>
public enum PathError : byte { None, Syntax, TooLong, AddressHack, SourceRoute, NonAscii }

/// <summary>Parses RFC 5321 paths from a command line's bytes: no exceptions, a reason for every refusal.</summary>
public static class MailPathParser
{
    const int MaxLocal = 64, MaxDomain = 255, MaxPath = 256;

    public readonly record struct Options(bool AllowHacks, bool AllowUtf8);

    /// <summary>
    /// Parses `&lt;...&gt;` at the start of <paramref name="s"/>; <paramref name="used"/> is how many bytes the path took.
    /// <paramref name="reverse"/>: MAIL FROM (the null path &lt;&gt; is allowed); otherwise RCPT TO (&lt;Postmaster&gt; is).
    /// </summary>
    public static PathError Parse(ReadOnlySpan<byte> s, bool reverse, Options opt, out MailPath? path, out int used, out string reason)
    {
        path = null;
        used = 0;
        reason = "";
        if (s.Length < 2 || s[0] != '<') return Fail("the address must be in angle brackets", out reason);
        if (reverse && s[1] == '>')
        {
            path = MailPath.Null;
            used = 2;
            return PathError.None;
        }
        int close = FindClose(s);
        if (close < 0) return Fail("no closing '>' in the address", out reason);
        used = close + 1;
        if (close + 1 > MaxPath) { reason = "the address is longer than 256 octets"; return PathError.TooLong; }
        var inner = s[1..close];

        // Source route: @a,@b:mailbox.
        string? route = null;
        if (inner.Length > 0 && inner[0] == '@')
        {
            int colon = inner.IndexOf((byte)':');
            if (colon < 0) return Fail("a route (@host,...:) without ':'", out reason);
            var adl = inner[..colon];
            foreach (var part in new SpanSplit(adl, (byte)','))
            {
                if (part.Length < 2 || part[0] != '@' || !IsDomain(part[1..], false))
                    return Fail("a malformed source route", out reason);
            }
            if (!opt.AllowHacks) { reason = "source routes are not accepted"; return PathError.SourceRoute; }
            route = Encoding.ASCII.GetString(adl).ToLowerInvariant();
            inner = inner[(colon + 1)..];
        }

        // Local part: dot-string or quoted-string, then '@'.
        int at;
        bool hack = false;
        if (inner.Length > 0 && inner[0] == '"')
        {
            int i = 1;
            while (i < inner.Length && inner[i] != '"')
            {
                byte b = inner[i];
                if (b == '\\')
                {
                    if (i + 1 >= inner.Length || inner[i + 1] < 32 || inner[i + 1] > 126) return Fail("a bad escape in a quoted local part", out reason);
                    i += 2;
                    continue;
                }
                if (b < 32 || b == 127 || (b > 127 && !opt.AllowUtf8)) return Bad(b, opt, out reason);
                if (b is (byte)'%' or (byte)'!') hack = true;
                i++;
            }
            if (i >= inner.Length) return Fail("an unterminated quoted local part", out reason);
            at = i + 1;
            if (at >= inner.Length || inner[at] != '@') return Fail("no '@' after the quoted local part", out reason);
        }
        else
        {
            at = inner.LastIndexOf((byte)'@');
            var local = at < 0 ? inner : inner[..at];
            if (at < 0 && !(!reverse && AsciiEquals(local, "postmaster"u8)))
                return Fail("the address has no '@domain'", out reason);
            if (local.Length == 0 || local[0] == '.' || local[^1] == '.' || local.IndexOf(".."u8) >= 0)
                return Fail("a malformed local part", out reason);
            foreach (var b in local)
            {
                if (b > 127)
                {
                    if (!opt.AllowUtf8) return Bad(b, opt, out reason);
                    continue;
                }
                if (!IsAtext(b) && b != '.') return Fail($"'{(char)b}' is not allowed in an unquoted local part", out reason);
                if (b is (byte)'%' or (byte)'!') hack = true;
            }
            if (at < 0)
            {
                path = new MailPath(Encoding.ASCII.GetString(local), "", null);
                return PathError.None;
            }
        }
        var localBytes = inner[..at];
        if (localBytes.Length > MaxLocal) { reason = "the local part is longer than 64 octets"; return PathError.TooLong; }
        if (hack && !opt.AllowHacks) { reason = "'%' and '!' address hacks are not accepted"; return PathError.AddressHack; }
        var domainBytes = inner[(at + 1)..];
        string? domain = ParseDomain(domainBytes, opt.AllowUtf8, out var domainError);
        if (domain is null) return Fail(domainError, out reason);
        path = new MailPath(Encoding.UTF8.GetString(localBytes), domain, route);
        return PathError.None;
    }

    /// <summary>EHLO/HELO argument: a domain or an address literal; returned lowercased (punycode for IDN).</summary>
    public static string? ParseDomain(ReadOnlySpan<byte> d, bool allowUtf8, out string reason)
    {
        reason = "";
        if (d.Length == 0) { reason = "an empty domain"; return null; }
        if (d.Length > MaxDomain) { reason = "the domain is longer than 255 octets"; return null; }
        if (d[0] == '[')
        {
            if (d[^1] != ']' || !IsAddressLiteral(d[1..^1])) { reason = "a malformed address literal"; return null; }
            return Encoding.ASCII.GetString(d).ToLowerInvariant();
        }
        bool ascii = true;
        foreach (var b in d) if (b > 127) ascii = false;
        if (ascii)
        {
            if (!IsDomain(d, false)) { reason = "a malformed domain"; return null; }
            return Encoding.ASCII.GetString(d).ToLowerInvariant();
        }
        if (!allowUtf8) { reason = "non-ASCII domain without SMTPUTF8"; return null; }
        string text;
        try { text = new UTF8Encoding(false, true).GetString(d); }
        catch (DecoderFallbackException) { reason = "the domain is not valid UTF-8"; return null; }
        try
        {
            var ace = new IdnMapping { UseStd3AsciiRules = true }.GetAscii(text).ToLowerInvariant();
            if (!IsDomain(Encoding.ASCII.GetBytes(ace), false)) { reason = "a malformed domain"; return null; }
            return ace;
        }
        catch (ArgumentException) { reason = "the domain is not a valid IDN"; return null; }
    }

    static PathError Fail(string why, out string reason)
    {
        reason = why;
        return PathError.Syntax;
    }

    static PathError Bad(byte b, Options opt, out string reason)
    {
        if (b > 127 && !opt.AllowUtf8)
        {
            reason = "non-ASCII address without SMTPUTF8";
            return PathError.NonAscii;
        }
        reason = "a control character in the address";
        return PathError.Syntax;
    }

    /// <summary>The '&gt;' that closes the path, skipping a quoted local part.</summary>
    static int FindClose(ReadOnlySpan<byte> s)
    {
        bool quoted = false;
        for (int i = 1; i < s.Length; i++)
        {
            byte b = s[i];
            if (quoted)
            {
                if (b == '\\') i++;
                else if (b == '"') quoted = false;
            }
            else if (b == '"') quoted = true;
            else if (b == '>') return i;
            else if (b is (byte)' ' or (byte)'<') return -1;
        }
        return -1;
    }

    /// <summary>RFC 5321 atext (RFC 5322 3.2.3).</summary>
    public static bool IsAtext(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
        || "!#$%&'*+-/=?^_`{|}~"u8.IndexOf(b) >= 0;

    /// <summary>sub-domain *("." sub-domain), sub-domain = Let-dig [Ldh-str]; labels up to 63 octets.</summary>
    public static bool IsDomain(ReadOnlySpan<byte> d, bool allowTrailingDot)
    {
        if (allowTrailingDot && d.Length > 1 && d[^1] == '.') d = d[..^1];
        if (d.Length == 0 || d.Length > MaxDomain) return false;
        foreach (var label in new SpanSplit(d, (byte)'.'))
        {
            if (label.Length == 0 || label.Length > 63 || label[0] == '-' || label[^1] == '-') return false;
            foreach (var b in label)
                if (!(b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9' or (byte)'-'))
                    return false;
        }
        return true;
    }

    static bool IsAddressLiteral(ReadOnlySpan<byte> s)
    {
        if (s.Length == 0) return false;
        if (s.StartsWith("IPv6:"u8) || s.StartsWith("ipv6:"u8))
            return System.Net.IPAddress.TryParse(Encoding.ASCII.GetString(s[5..]), out var v6)
                && v6.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 && s[5..].IndexOf((byte)'%') < 0;
        // IPv4: four decimal octets, nothing else (General-address-literal tags are not accepted).
        int parts = 0;
        foreach (var p in new SpanSplit(s, (byte)'.'))
        {
            if (p.Length is 0 or > 3) return false;
            int v = 0;
            foreach (var b in p)
            {
                if (b is < (byte)'0' or > (byte)'9') return false;
                v = v * 10 + (b - '0');
            }
            if (v > 255) return false;
            parts++;
        }
        return parts == 4;
    }

    static bool AsciiEquals(ReadOnlySpan<byte> a, ReadOnlySpan<byte> lowerB)
    {
        if (a.Length != lowerB.Length) return false;
        for (int i = 0; i < a.Length; i++)
            if ((a[i] | 0x20) != lowerB[i]) return false;
        return true;
    }
}

/// <summary>Splits a span on a separator without allocating (empty parts included).</summary>
public ref struct SpanSplit(ReadOnlySpan<byte> s, byte sep)
{
    ReadOnlySpan<byte> _rest = s;
    bool _done;

    public ReadOnlySpan<byte> Current { get; private set; }

    public readonly SpanSplit GetEnumerator() => this;

    public bool MoveNext()
    {
        if (_done) return false;
        int i = _rest.IndexOf(sep);
        if (i < 0)
        {
            Current = _rest;
            _done = true;
            return true;
        }
        Current = _rest[..i];
        _rest = _rest[(i + 1)..];
        return true;
    }
}
