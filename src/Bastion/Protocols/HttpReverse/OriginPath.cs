using System.Text;
using System.Text.Unicode;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// The path of an origin-form target as the policy and the routes see it, decoded the way Kestrel (the HTTP/2 path)
/// decodes it, so that both protocols judge the same request the same: %XX decoded except an encoded '/', the
/// result UTF-8, dot segments removed (RFC 3986 §5.2.4). The query stays as sent.
/// </summary>
public static class OriginPath
{
    /// <summary>The decoded path, or null when it is not valid (a bad %-escape, bytes that are not UTF-8).</summary>
    public static string? Decode(ReadOnlySpan<byte> raw)
    {
        if (raw.IndexOf((byte)'%') < 0)
        {
            var plain = Encoding.ASCII.GetString(raw);
            return plain.Contains("/.", StringComparison.Ordinal) ? RemoveDotSegments(plain) : plain;
        }
        var buf = raw.Length <= 1024 ? stackalloc byte[raw.Length] : new byte[raw.Length];
        int n = 0;
        for (int i = 0; i < raw.Length; i++)
        {
            byte b = raw[i];
            if (b == (byte)'%')
            {
                if (i + 2 >= raw.Length) return null;
                int hi = Codec(raw[i + 1]), lo = Codec(raw[i + 2]);
                if (hi < 0 || lo < 0) return null;
                int v = (hi << 4) | lo;
                if (v != '/')
                {
                    buf[n++] = (byte)v;
                    i += 2;
                    continue;
                }
            }
            buf[n++] = b;
        }
        var decoded = buf[..n];
        if (!Utf8.IsValid(decoded)) return null;
        var s = Encoding.UTF8.GetString(decoded);
        return s.Contains("/.", StringComparison.Ordinal) ? RemoveDotSegments(s) : s;
    }

    static int Codec(byte b) => Http.Codec.HttpChars.HexValue(b);

    /// <summary>RFC 3986 §5.2.4 on an absolute path.</summary>
    public static string RemoveDotSegments(string path)
    {
        var output = new List<string>();
        var segments = path.Split('/');
        // segments[0] is the empty string before the leading '/'.
        for (int i = 1; i < segments.Length; i++)
        {
            var seg = segments[i];
            bool last = i == segments.Length - 1;
            if (seg == ".")
            {
                if (last) output.Add("");
                continue;
            }
            if (seg == "..")
            {
                if (output.Count > 0) output.RemoveAt(output.Count - 1);
                if (last) output.Add("");
                continue;
            }
            output.Add(seg);
        }
        return "/" + string.Join('/', output);
    }
}
