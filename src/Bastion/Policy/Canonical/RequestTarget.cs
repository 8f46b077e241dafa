using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Bastion.Policy.Canonical;

/// <summary>
/// Parses an HTTP request target into its <see cref="CanonicalTarget"/>, sans-I/O: origin-form (`/p?q`, the reverse
/// proxy) or absolute-form (`http://host:port/p?q`, the forward proxy); authority-form (`host:port`, CONNECT) by
/// <see cref="ParseAuthority"/>. Never throws on any input: Ok, Ambiguous or Malformed with a reason.
/// </summary>
public static class RequestTarget
{
    public static TargetStatus Parse(ReadOnlySpan<byte> target, AmbiguousTargets mode, CanonicalTarget into, out string? reason)
    {
        if (into.TryRepeat(target, mode, out var status, out reason)) return status;
        status = ParseFresh(target, mode, into, out reason);
        return into.Remember(target, mode, status, reason);
    }

    static TargetStatus ParseFresh(ReadOnlySpan<byte> target, AmbiguousTargets mode, CanonicalTarget into, out string? reason)
    {
        into.Clear();
        reason = null;
        if (target.IsEmpty) return Fail("empty request target", out reason);
        ReadOnlySpan<byte> rest = target;
        if (target[0] != (byte)'/')
        {
            int colon = target.IndexOf((byte)':');
            if (colon <= 0 || !IsScheme(target[..colon]) || !target[(colon + 1)..].StartsWith("//"u8))
                return Fail("the target is neither an absolute URL nor a path", out reason);
            into.Scheme = Lower(target[..colon]);
            var afterSlashes = target[(colon + 3)..];
            int end = afterSlashes.IndexOfAny("/?#"u8);
            var authority = end < 0 ? afterSlashes : afterSlashes[..end];
            rest = end < 0 ? default : afterSlashes[end..];
            int at = authority.LastIndexOf((byte)'@');
            if (at >= 0)
            {
                into.HadUserinfo = true;
                authority = authority[(at + 1)..];
            }
            if (!TryHostPort(authority, CanonicalTarget.DefaultPort(into.Scheme), out var host, out int port, out reason))
                return TargetStatus.Malformed;
            into.Host = host;
            into.Port = port;
        }
        int hash = rest.IndexOf((byte)'#');
        if (hash >= 0)
        {
            into.HadFragment = true;
            rest = rest[..hash];
        }
        int q = rest.IndexOf((byte)'?');
        var path = q < 0 ? rest : rest[..q];
        if (q >= 0)
        {
            if (!CanonicalPath.NormalizeQuery(rest[q..], out var query, out reason)) return TargetStatus.Malformed;
            into.Query = query;
        }
        return CanonicalPath.Normalize(path, mode, into, out reason);
    }

    /// <summary>A target given as text (Kestrel's raw target, `explain`): each char below 0x80 is its byte, the rest UTF-8.</summary>
    public static TargetStatus Parse(string target, AmbiguousTargets mode, CanonicalTarget into, out string? reason)
    {
        int max = Encoding.UTF8.GetMaxByteCount(target.Length);
        byte[]? rented = null;
        Span<byte> bytes = max <= 2048 ? stackalloc byte[max] : (rented = ArrayPool<byte>.Shared.Rent(max)).AsSpan(0, max);
        try
        {
            int n = Encoding.UTF8.GetBytes(target, bytes);
            return Parse(bytes[..n], mode, into, out reason);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>CONNECT's authority-form: `host:port` or `[v6]:port`, port 1-65535, host normalised.</summary>
    public static TargetStatus ParseAuthority(ReadOnlySpan<byte> authority, out string host, out int port, out string? reason)
    {
        if (authority.IndexOfAny("/?#@"u8) >= 0)
        {
            host = "";
            port = 0;
            return Fail("CONNECT needs host:port", out reason);
        }
        return TryHostPort(authority, -1, out host, out port, out reason) ? TargetStatus.Ok : TargetStatus.Malformed;
    }

    public static TargetStatus ParseAuthority(string authority, out string host, out int port, out string? reason) =>
        ParseAuthority(Encoding.UTF8.GetBytes(authority), out host, out port, out reason);

    /// <summary>host[:port]; without a port, <paramref name="defaultPort"/> (-1: a port is required).</summary>
    static bool TryHostPort(ReadOnlySpan<byte> a, int defaultPort, out string host, out int port, out string? reason)
    {
        host = "";
        port = defaultPort;
        reason = null;
        ReadOnlySpan<byte> h, p = default;
        bool hasPort;
        if (!a.IsEmpty && a[0] == (byte)'[')
        {
            int close = a.IndexOf((byte)']');
            if (close < 0) return Fail("unterminated IPv6 literal", out reason, false);
            h = a[..(close + 1)];
            var after = a[(close + 1)..];
            hasPort = !after.IsEmpty;
            if (hasPort)
            {
                if (after[0] != (byte)':') return Fail("junk after an IPv6 literal", out reason, false);
                p = after[1..];
            }
        }
        else
        {
            int colon = a.IndexOf((byte)':');
            hasPort = colon >= 0;
            h = hasPort ? a[..colon] : a;
            if (hasPort) p = a[(colon + 1)..];
        }
        if (h.IsEmpty) return Fail("no host", out reason, false);
        // RFC 3986 allows escapes in a host name; no resolver does: refuse rather than guess.
        if (h.IndexOf((byte)'%') >= 0) return Fail("a percent-encoded host", out reason, false);
        foreach (var b in h)
            if (b <= 0x20 || b == 0x7f) return Fail("a space or control character in the host", out reason, false);
        if (hasPort && !p.IsEmpty)
        {
            if (p.Length > 5) return Fail("port out of range", out reason, false);
            int v = 0;
            foreach (var b in p)
            {
                if (b is < (byte)'0' or > (byte)'9') return Fail("the port is not a number", out reason, false);
                v = v * 10 + (b - '0');
            }
            if (v is 0 or > 65535) return Fail("port out of range", out reason, false);
            port = v;
        }
        if (port < 0) return Fail("no port", out reason, false);
        if (!Utf8.IsValid(h)) return Fail("invalid UTF-8 in the host", out reason, false);
        var text = Encoding.UTF8.GetString(h);
        if (!HostName.TryNormalize(text, out host, out var err)) return Fail($"bad host: {err}", out reason, false);
        return true;
    }

    static bool IsScheme(ReadOnlySpan<byte> s)
    {
        if (s.IsEmpty || !char.IsAsciiLetter((char)s[0])) return false;
        foreach (var b in s)
            if (!(char.IsAsciiLetterOrDigit((char)b) || b is (byte)'+' or (byte)'-' or (byte)'.')) return false;
        return true;
    }

    static string Lower(ReadOnlySpan<byte> s)
    {
        if (s.SequenceEqual("http"u8)) return "http";
        if (s.SequenceEqual("https"u8)) return "https";
        return Encoding.ASCII.GetString(s).ToLowerInvariant();
    }

    static TargetStatus Fail(string why, out string? reason)
    {
        reason = why;
        return TargetStatus.Malformed;
    }

    static bool Fail(string why, out string? reason, bool result)
    {
        reason = why;
        return result;
    }

    /// <summary>
    /// A target fit for a log line: `user:password@` cut out of an absolute URL (SPEC 5: never with credentials).
    /// Works on anything, parsed or not.
    /// </summary>
    public static string Redact(string target)
    {
        if (target.StartsWith('/')) return target;
        int scheme = target.IndexOf("://", StringComparison.Ordinal);
        // Authority-form (CONNECT user:pw@host:443) has no scheme.
        int start = scheme < 0 ? 0 : scheme + 3;
        int end = target.AsSpan(start).IndexOfAny("/?#");
        end = end < 0 ? target.Length : start + end;
        int at = target.AsSpan(start, end - start).LastIndexOf('@');
        return at < 0 ? target : string.Concat(target.AsSpan(0, start), target.AsSpan(start + at + 1));
    }
}
