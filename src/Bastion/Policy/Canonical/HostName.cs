using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Bastion.Policy.Canonical;

/// <summary>
/// The one spelling of a target host that is both judged and connected to (SPEC 2.1): names lowercased, without
/// a trailing dot, IDN as punycode; IP literals in their canonical text, including the inet_aton shorthands that
/// resolvers accept (`0`, `127.1`, `0x7f.1`), so that no spelling of an address slips past a CIDR rule.
/// The same conversion is applied to rules and list entries at load.
/// </summary>
public static class HostName
{
    /// <summary>Longest DNS name in text form (RFC 1035), without the trailing dot.</summary>
    public const int MaxLength = 253;

    // IdnMapping holds no per-call state; InvariantGlobalization keeps its managed punycode (no NFKC mapping:
    // the name judged is the name resolved, so another spelling is simply another name).
    static readonly IdnMapping Idn = new();

    /// <summary>
    /// Normalises a host as found on the wire or in a rule: a name, an IPv4 address (any inet_aton spelling), or an
    /// IPv6 address with or without brackets. False with a reason when it is no valid host at all.
    /// </summary>
    public static bool TryNormalize(ReadOnlySpan<char> host, out string normalized, out string? error)
    {
        normalized = "";
        error = null;
        if (host.IsEmpty) return Fail("empty host", out error);
        if (host[0] == '[')
        {
            if (host.Length < 3 || host[^1] != ']') return Fail("unterminated IPv6 literal", out error);
            return TryIPv6(host[1..^1], out normalized, out error);
        }
        if (host.Contains(':')) return TryIPv6(host, out normalized, out error);
        if (host[^1] == '.') host = host[..^1];
        if (host.IsEmpty || host[0] == '.') return Fail("empty label in host name", out error);
        if (host.Length > MaxLength * 4) return Fail("host name too long", out error);
        if (EndsInNumber(host))
        {
            // WHATWG URL: a host whose last label is a number is an IPv4 address or nothing; resolvers
            // (inet_aton) would read `127.1`, `0x7f.1` or `2130706433` as one, so they must be judged as one.
            if (!IsIPv4Text(host) || !IPAddress.TryParse(host, out var v4) || v4.AddressFamily != AddressFamily.InterNetwork)
                return Fail("not a valid IPv4 address", out error);
            normalized = v4.ToString();
            return true;
        }
        return TryName(host, out normalized, out error);
    }

    /// <summary>The normalised host, or null when it is not a valid host.</summary>
    public static string? Normalize(ReadOnlySpan<char> host) => TryNormalize(host, out var n, out _) ? n : null;

    static bool TryIPv6(ReadOnlySpan<char> text, out string normalized, out string? error)
    {
        normalized = "";
        error = null;
        // A zone id (`fe80::1%eth0`) names an interface of this machine: never a target.
        if (text.Contains('%')) return Fail("IPv6 zone identifiers are not allowed", out error);
        if (!IPAddress.TryParse(text, out var ip) || ip.AddressFamily != AddressFamily.InterNetworkV6)
            return Fail("not a valid IPv6 address", out error);
        normalized = ip.ToString();
        return true;
    }

    static bool TryName(ReadOnlySpan<char> host, out string normalized, out string? error)
    {
        normalized = "";
        error = null;
        bool ascii = true, lower = true;
        foreach (var c in host)
        {
            if (c >= 0x80) ascii = false;
            else if (c is >= 'A' and <= 'Z') lower = false;
        }
        string name;
        if (ascii) name = lower ? host.ToString() : host.ToString().ToLowerInvariant();
        else
        {
            try { name = Idn.GetAscii(host.ToString().ToLowerInvariant()); }
            catch (ArgumentException) { return Fail("not a valid internationalised domain name", out error); }
            name = name.ToLowerInvariant();
            if (name.EndsWith('.')) name = name[..^1];
        }
        if (name.Length > MaxLength) return Fail("host name longer than 253 characters", out error);
        int label = 0;
        foreach (var c in name)
        {
            if (c == '.')
            {
                if (label == 0) return Fail("empty label in host name", out error);
                label = 0;
                continue;
            }
            // Letters, digits, hyphen, and the underscore that real names (SRV, some CDNs) carry.
            if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_'))
                return Fail($"invalid character '{Printable(c)}' in host name", out error);
            if (++label > 63) return Fail("host name label longer than 63 characters", out error);
        }
        if (label == 0) return Fail("empty label in host name", out error);
        normalized = name;
        return true;
    }

    /// <summary>WHATWG's "ends in a number": the last label is decimal digits, or 0x followed by hex digits.</summary>
    static bool EndsInNumber(ReadOnlySpan<char> host)
    {
        int dot = host.LastIndexOf('.');
        var last = dot < 0 ? host : host[(dot + 1)..];
        if (last.IsEmpty) return false;
        bool digits = true;
        foreach (var c in last)
            if (!char.IsAsciiDigit(c)) { digits = false; break; }
        if (digits) return true;
        if (last.Length >= 2 && last[0] == '0' && (last[1] | 0x20) == 'x')
        {
            foreach (var c in last[2..])
                if (!char.IsAsciiHexDigit(c)) return false;
            return true;
        }
        return false;
    }

    static bool IsIPv4Text(ReadOnlySpan<char> s)
    {
        foreach (var c in s)
            if (!(char.IsAsciiHexDigit(c) || c is '.' or 'x' or 'X')) return false;
        return true;
    }

    static string Printable(char c) => c < 0x20 || c == 0x7f ? $"\\x{(int)c:x2}" : c.ToString();

    static bool Fail(string why, out string? error)
    {
        error = why;
        return false;
    }

    /// <summary>A host as it goes into a URL or a Host header: IPv6 in brackets.</summary>
    public static string ForUrl(string normalized) => normalized.Contains(':') ? $"[{normalized}]" : normalized;
}
