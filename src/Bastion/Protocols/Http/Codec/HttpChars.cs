using System.Buffers;

namespace Bastion.Protocols.Http.Codec;

/// <summary>The byte classes of RFC 9110 §5.6 and RFC 3986, as vectorisable sets.</summary>
public static class HttpChars
{
    /// <summary>tchar (RFC 9110 §5.6.2): what a method, a header name or a transfer coding is made of.</summary>
    public static readonly SearchValues<byte> Token = SearchValues.Create(
        "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    /// <summary>Bytes never allowed in a field value: CTLs other than HTAB, and DEL. CR and LF are among them.</summary>
    public static readonly SearchValues<byte> NotFieldValue = SearchValues.Create(
        "\0\x01\x02\x03\x04\x05\x06\x07\x08\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x7f"u8);

    /// <summary>What a request target may hold: visible ASCII (RFC 9112 §3.2 forms are all made of it).</summary>
    public static bool IsTargetByte(byte b) => b is > 0x20 and < 0x7f;

    public static bool IsToken(byte b) => Token.Contains(b);

    public static bool IsOws(byte b) => b is (byte)' ' or (byte)'\t';

    public static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';

    public static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };

    /// <summary>The value without leading and trailing OWS (SP and HTAB only: RFC 9110 §5.6.3).</summary>
    public static ReadOnlySpan<byte> TrimOws(ReadOnlySpan<byte> s)
    {
        int a = 0, b = s.Length;
        while (a < b && IsOws(s[a])) a++;
        while (b > a && IsOws(s[b - 1])) b--;
        return s[a..b];
    }

    /// <summary>ASCII case-insensitive equality of wire bytes with a lower-case ASCII literal.</summary>
    public static bool EqualsLower(ReadOnlySpan<byte> wire, ReadOnlySpan<byte> lower)
    {
        if (wire.Length != lower.Length) return false;
        for (int i = 0; i < wire.Length; i++)
        {
            int b = wire[i];
            if ((uint)(b - 'A') <= 'Z' - 'A') b |= 0x20;
            if (b != lower[i]) return false;
        }
        return true;
    }

    /// <summary>ASCII case-insensitive equality of wire bytes with a string's characters (Latin-1 compare).</summary>
    public static bool EqualsIgnoreCase(ReadOnlySpan<byte> wire, string s)
    {
        if (wire.Length != s.Length) return false;
        for (int i = 0; i < wire.Length; i++)
        {
            int a = wire[i], b = s[i];
            if (a == b) continue;
            if ((uint)((a | 0x20) - 'a') > 'z' - 'a' || (a | 0x20) != (b | 0x20)) return false;
        }
        return true;
    }

    /// <summary>ASCII case-insensitive equality of two wire byte strings.</summary>
    public static bool EqualsIgnoreCaseBytes(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (a.Length != b.Length) return false;
        for (int i = 0; i < a.Length; i++)
        {
            int x = a[i], y = b[i];
            if (x == y) continue;
            if ((uint)((x | 0x20) - 'a') > 'z' - 'a' || (x | 0x20) != (y | 0x20)) return false;
        }
        return true;
    }

    /// <summary>
    /// Walks a comma-separated list (RFC 9110 §5.6.1), giving each element without its OWS. False (and stops) at
    /// an empty element: a recipient may ignore those, but a gateway that must agree with every server refuses.
    /// </summary>
    public ref struct ListReader(ReadOnlySpan<byte> value)
    {
        ReadOnlySpan<byte> _rest = value;
        bool _done;

        public bool Empty { get; private set; }

        public bool Next(out ReadOnlySpan<byte> element)
        {
            element = default;
            if (_done) return false;
            int comma = _rest.IndexOf((byte)',');
            var part = comma < 0 ? _rest : _rest[..comma];
            _rest = comma < 0 ? default : _rest[(comma + 1)..];
            _done = comma < 0;
            element = TrimOws(part);
            if (element.IsEmpty)
            {
                Empty = true;
                _done = true;
                return false;
            }
            return true;
        }
    }

    /// <summary>A non-negative decimal of at most 18 digits (fits a long), or -1.</summary>
    public static long ParseDecimal(ReadOnlySpan<byte> s)
    {
        if (s.IsEmpty || s.Length > 18) return -1;
        long v = 0;
        foreach (var b in s)
        {
            if (!IsDigit(b)) return -1;
            v = v * 10 + (b - '0');
        }
        return v;
    }
}
