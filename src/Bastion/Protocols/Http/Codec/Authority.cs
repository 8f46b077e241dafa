namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// `uri-host [ ":" port ]` (RFC 3986 §3.2, as RFC 9112 uses it for Host and request targets): an IP literal in
/// brackets, or a reg-name / IPv4 address of unreserved, percent-encoded and sub-delim bytes. Userinfo (`@`) is
/// refused outright, and so is a comma, which some servers read as a list separator in Host.
/// </summary>
public static class Authority
{
    public enum Problem { None, Userinfo, Malformed, BadPort }

    /// <summary>Parses an authority. <paramref name="port"/> is -1 when absent or empty (`host:`).</summary>
    public static Problem Parse(ReadOnlySpan<byte> s, out int hostLength, out int port)
    {
        hostLength = 0;
        port = -1;
        if (s.IndexOf((byte)'@') >= 0) return Problem.Userinfo;
        int i = 0;
        if (!s.IsEmpty && s[0] == (byte)'[')
        {
            int close = s.IndexOf((byte)']');
            if (close < 2) return Problem.Malformed;
            foreach (var b in s[1..close])
                if (!(HttpChars.HexValue(b) >= 0 || b is (byte)':' or (byte)'.')) return Problem.Malformed;
            i = close + 1;
        }
        else
        {
            while (i < s.Length && s[i] != (byte)':')
            {
                byte b = s[i];
                if (b == (byte)'%')
                {
                    if (i + 2 >= s.Length || HttpChars.HexValue(s[i + 1]) < 0 || HttpChars.HexValue(s[i + 2]) < 0) return Problem.Malformed;
                    i += 3;
                    continue;
                }
                if (!IsRegNameByte(b)) return Problem.Malformed;
                i++;
            }
        }
        hostLength = i;
        if (i == s.Length) return Problem.None;
        if (s[i] != (byte)':' || i == 0) return Problem.Malformed;
        var digits = s[(i + 1)..];
        if (digits.IsEmpty) return Problem.None;
        if (digits.Length > 5) return Problem.BadPort;
        int p = 0;
        foreach (var b in digits)
        {
            if (!HttpChars.IsDigit(b)) return Problem.BadPort;
            p = p * 10 + (b - '0');
        }
        if (p > 65535) return Problem.BadPort;
        port = p;
        return Problem.None;
    }

    // unreserved / sub-delims, less the comma.
    static bool IsRegNameByte(byte b) =>
        b is >= (byte)'a' and <= (byte)'z' or >= (byte)'A' and <= (byte)'Z' or >= (byte)'0' and <= (byte)'9'
            or (byte)'-' or (byte)'.' or (byte)'_' or (byte)'~'
            or (byte)'!' or (byte)'$' or (byte)'&' or (byte)'\'' or (byte)'(' or (byte)')' or (byte)'*' or (byte)'+'
            or (byte)';' or (byte)'=';
}
