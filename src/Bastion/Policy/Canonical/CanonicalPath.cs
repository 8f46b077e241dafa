using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Bastion.Policy.Canonical;

/// <summary>
/// Path and query normalisation (RFC 3986 §6.2.2), sans-I/O over the target's bytes. The forwarded form decodes
/// unreserved characters, writes other escapes in upper-case hex, escapes what RFC 3986 does not allow raw and
/// removes dot-segments; the policy's form is the same path fully decoded. Forms that backends read differently
/// (`%2F`, `%5C`, `\`, `//`, control characters, invalid UTF-8 after decoding) are reported as ambiguous.
/// </summary>
static class CanonicalPath
{
    /// <summary>Fills <see cref="CanonicalTarget.Path"/>, <see cref="CanonicalTarget.PolicyPath"/> and <see cref="CanonicalTarget.Ambiguity"/>.</summary>
    public static TargetStatus Normalize(ReadOnlySpan<byte> path, AmbiguousTargets mode, CanonicalTarget r, out string? reason)
    {
        reason = null;
        if (path.IsEmpty) path = "/"u8;
        if (path[0] != (byte)'/') return Fail("the path must start with '/'", out reason);
        // Worst case every byte becomes %XX.
        int cap = path.Length * 3;
        char[]? rented = null;
        Span<char> enc = cap <= 1024 ? stackalloc char[cap] : (rented = ArrayPool<char>.Shared.Rent(cap)).AsSpan(0, cap);
        try
        {
            int n = 0;
            string? ambiguity = null;
            for (int i = 0; i < path.Length; i++)
            {
                byte b = path[i];
                if (b == (byte)'%')
                {
                    if (i + 2 >= path.Length || !TryHex(path[i + 1], path[i + 2], out byte d))
                        return Fail("malformed percent-encoding in the path", out reason);
                    i += 2;
                    if (IsUnreserved(d)) enc[n++] = (char)d;
                    else
                    {
                        n = Escape(enc, n, d);
                        ambiguity ??= d switch
                        {
                            (byte)'/' => "an encoded slash (%2F) in the path",
                            (byte)'\\' => "an encoded backslash (%5C) in the path",
                            0 => "an encoded NUL (%00) in the path",
                            < 0x20 or 0x7f => "an encoded control character in the path",
                            _ => null,
                        };
                    }
                }
                else if (b == (byte)'\\')
                {
                    // Some servers read '\' as '/': keep it as received, but it is ambiguous.
                    enc[n++] = '\\';
                    ambiguity ??= "a backslash in the path";
                }
                else if (IsPathChar(b)) enc[n++] = (char)b;
                else if (b <= 0x20 || b == 0x7f) return Fail("a space or control character in the path", out reason);
                else n = Escape(enc, n, b);
            }
            int len = RemoveDotSegments(enc[..n]);
            var canonical = enc[..len];
            if (ambiguity is null && canonical.IndexOf("//") >= 0) ambiguity = "an empty path segment (//)";

            // The policy's view: every escape decoded, as UTF-8.
            var decoded = Decode(canonical, out bool validUtf8);
            if (!validUtf8) ambiguity ??= "invalid UTF-8 in the decoded path";
            r.Path = canonical.ToString();
            r.Ambiguity = ambiguity;
            if (ambiguity is not null)
            {
                if (mode == AmbiguousTargets.Refuse)
                {
                    r.PolicyPath = decoded;
                    reason = ambiguity;
                    return TargetStatus.Ambiguous;
                }
                // Passed through: judge the most collapsed reading any backend could make of it.
                decoded = Collapse(decoded);
            }
            r.PolicyPath = decoded;
            return TargetStatus.Ok;
        }
        finally
        {
            if (rented is not null) ArrayPool<char>.Shared.Return(rented);
        }
    }

    /// <summary>The query as forwarded: unreserved escapes decoded, others in upper-case hex; a stray '%' kept as sent.</summary>
    public static bool NormalizeQuery(ReadOnlySpan<byte> query, out string normalized, out string? reason)
    {
        normalized = "";
        reason = null;
        if (query.IsEmpty) return true;
        int cap = query.Length * 3;
        char[]? rented = null;
        Span<char> enc = cap <= 1024 ? stackalloc char[cap] : (rented = ArrayPool<char>.Shared.Rent(cap)).AsSpan(0, cap);
        try
        {
            int n = 0;
            for (int i = 0; i < query.Length; i++)
            {
                byte b = query[i];
                if (b == (byte)'%' && i + 2 < query.Length && TryHex(query[i + 1], query[i + 2], out byte d))
                {
                    i += 2;
                    if (IsUnreserved(d)) enc[n++] = (char)d;
                    else n = Escape(enc, n, d);
                }
                else if (b == (byte)'%' || IsPathChar(b) || b is (byte)'?') enc[n++] = (char)b;
                else if (b <= 0x20 || b == 0x7f)
                {
                    reason = "a space or control character in the query";
                    return false;
                }
                else n = Escape(enc, n, b);
            }
            normalized = new string(enc[..n]);
            return true;
        }
        finally
        {
            if (rented is not null) ArrayPool<char>.Shared.Return(rented);
        }
    }

    /// <summary>RFC 3986 §5.2.4 in place; returns the new length. `.` and `..` segments go, `..` never above the root.</summary>
    internal static int RemoveDotSegments(Span<char> p)
    {
        if (p.IndexOf('.') < 0) return p.Length;
        int w = 0; // write position: p[..w] is the output so far
        int i = 1; // read position, just past a '/'
        while (true)
        {
            int slash = p[i..].IndexOf('/');
            int end = slash < 0 ? p.Length : i + slash;
            bool last = slash < 0;
            var seg = p[i..end];
            if (seg is ['.'])
            {
                if (last) p[w++] = '/';
            }
            else if (seg is ['.', '.'])
            {
                int cut = p[..w].LastIndexOf('/');
                w = cut < 0 ? 0 : cut;
                if (last) p[w++] = '/';
            }
            else
            {
                p[w++] = '/';
                seg.CopyTo(p[w..]);
                w += seg.Length;
            }
            if (last) break;
            i = end + 1;
        }
        if (w == 0) p[w++] = '/';
        return w;
    }

    static string Decode(ReadOnlySpan<char> canonical, out bool validUtf8)
    {
        if (canonical.IndexOf('%') < 0)
        {
            validUtf8 = true;
            return canonical.ToString();
        }
        byte[]? rented = null;
        Span<byte> bytes = canonical.Length <= 1024 ? stackalloc byte[canonical.Length] : (rented = ArrayPool<byte>.Shared.Rent(canonical.Length)).AsSpan(0, canonical.Length);
        try
        {
            int n = 0;
            for (int i = 0; i < canonical.Length; i++)
            {
                char c = canonical[i];
                if (c == '%' && i + 2 < canonical.Length && TryHex((byte)canonical[i + 1], (byte)canonical[i + 2], out byte d))
                {
                    bytes[n++] = d;
                    i += 2;
                }
                else bytes[n++] = (byte)c;
            }
            validUtf8 = Utf8.IsValid(bytes[..n]);
            return Encoding.UTF8.GetString(bytes[..n]);
        }
        finally
        {
            if (rented is not null) ArrayPool<byte>.Shared.Return(rented);
        }
    }

    /// <summary>Backslashes as slashes, runs of slashes as one, dot-segments removed: the widest reading of a passed path.</summary>
    static string Collapse(string decoded)
    {
        var chars = decoded.Replace('\\', '/').ToCharArray();
        int w = 0;
        for (int i = 0; i < chars.Length; i++)
        {
            if (chars[i] == '/' && w > 0 && chars[w - 1] == '/') continue;
            chars[w++] = chars[i];
        }
        if (w == 0 || chars[0] != '/') return "/" + new string(chars, 0, w);
        return new string(chars, 0, RemoveDotSegments(chars.AsSpan(0, w)));
    }

    static int Escape(Span<char> dest, int n, byte b)
    {
        dest[n++] = '%';
        dest[n++] = "0123456789ABCDEF"[b >> 4];
        dest[n++] = "0123456789ABCDEF"[b & 0xf];
        return n;
    }

    internal static bool TryHex(byte hi, byte lo, out byte value)
    {
        int h = HexValue(hi), l = HexValue(lo);
        value = (byte)((h << 4) | l);
        return h >= 0 && l >= 0;
    }

    static int HexValue(byte c) => c switch
    {
        >= (byte)'0' and <= (byte)'9' => c - '0',
        >= (byte)'a' and <= (byte)'f' => c - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => c - 'A' + 10,
        _ => -1,
    };

    /// <summary>RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~".</summary>
    internal static bool IsUnreserved(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
            or (byte)'-' or (byte)'.' or (byte)'_' or (byte)'~';

    /// <summary>What a path may carry raw: pchar (unreserved, sub-delims, ':' and '@') and '/'.</summary>
    static bool IsPathChar(byte b) =>
        IsUnreserved(b) || b is (byte)'!' or (byte)'$' or (byte)'&' or (byte)'\'' or (byte)'(' or (byte)')'
            or (byte)'*' or (byte)'+' or (byte)',' or (byte)';' or (byte)'=' or (byte)':' or (byte)'@' or (byte)'/';

    static TargetStatus Fail(string why, out string? reason)
    {
        reason = why;
        return TargetStatus.Malformed;
    }
}
