using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// Data-connection addresses as FTP writes them: PORT and 227 (`h1,h2,h3,h4,p1,p2`, RFC 959), EPRT (`|1|a|p|`,
/// `|2|a|p|`) and 229 (`(|||p|)`, RFC 2428). Parsing is strict and never throws.
/// </summary>
public static class FtpAddress
{
    public enum EprtResult : byte { Ok, Malformed, UnknownProtocol }

    /// <summary>`h1,h2,h3,h4,p1,p2`, each 0-255 in 1-3 digits; nothing else.</summary>
    public static bool TryParsePort(ReadOnlySpan<byte> s, out IPEndPoint? ep)
    {
        ep = null;
        Span<byte> v = stackalloc byte[6];
        int n = 0, i = 0;
        while (n < 6)
        {
            int start = i, value = 0;
            while (i < s.Length && s[i] is >= (byte)'0' and <= (byte)'9' && i - start < 3) value = value * 10 + (s[i++] - '0');
            if (i == start || value > 255) return false;
            v[n++] = (byte)value;
            if (n < 6)
            {
                if (i >= s.Length || s[i] != (byte)',') return false;
                i++;
            }
        }
        if (i != s.Length) return false;
        ep = new IPEndPoint(new IPAddress(v[..4]), (v[4] << 8) | v[5]);
        return true;
    }

    /// <summary>`<d>proto<d>address<d>port<d>` with any printable delimiter; proto 1 = IPv4, 2 = IPv6.</summary>
    public static EprtResult TryParseEprt(ReadOnlySpan<byte> s, out IPEndPoint? ep)
    {
        ep = null;
        if (s.Length < 7) return EprtResult.Malformed;
        byte d = s[0];
        if (d is < 33 or > 126 || s[^1] != d) return EprtResult.Malformed;
        var body = s[1..^1];
        int a = body.IndexOf(d);
        if (a < 0) return EprtResult.Malformed;
        int b = body[(a + 1)..].IndexOf(d);
        if (b < 0) return EprtResult.Malformed;
        var proto = body[..a];
        var addr = body.Slice(a + 1, b);
        var port = body[(a + 1 + b + 1)..];
        if (port.IndexOf(d) >= 0) return EprtResult.Malformed;
        if (!FtpCommandParser.TryNumber(proto, out var pr)) return EprtResult.Malformed;
        if (pr is not (1 or 2)) return EprtResult.UnknownProtocol;
        if (!FtpCommandParser.TryNumber(port, out var p) || p is < 1 or > 65535 || port.Length > 5) return EprtResult.Malformed;
        if (addr.Length is 0 or > 45) return EprtResult.Malformed;
        Span<char> chars = stackalloc char[addr.Length];
        for (int i = 0; i < addr.Length; i++)
        {
            byte c = addr[i];
            bool ok = pr == 1 ? c is (byte)'.' or >= (byte)'0' and <= (byte)'9'
                : c is (byte)':' or (byte)'.' or >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F';
            if (!ok) return EprtResult.Malformed; // no zone ids, no names
            chars[i] = (char)c;
        }
        if (!IPAddress.TryParse(chars, out var ip)) return EprtResult.Malformed;
        var family = pr == 1 ? AddressFamily.InterNetwork : AddressFamily.InterNetworkV6;
        if (ip.AddressFamily != family) return EprtResult.Malformed;
        // IPv4 must be the dotted quad, not one of the shorter forms IPAddress also takes ("127.1").
        if (pr == 1 && addr.Count((byte)'.') != 3) return EprtResult.Malformed;
        ep = new IPEndPoint(ip, (int)p);
        return EprtResult.Ok;
    }

    /// <summary>The address a 227 reply names: the first `h1,h2,h3,h4,p1,p2` in its text (RFC 1123 4.1.2.6).</summary>
    public static bool TryParsePasvReply(ReadOnlySpan<byte> text, out IPEndPoint? ep)
    {
        ep = null;
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] is < (byte)'0' or > (byte)'9' || (i > 0 && text[i - 1] is >= (byte)'0' and <= (byte)'9')) continue;
            int end = i;
            while (end < text.Length && (text[end] is >= (byte)'0' and <= (byte)'9' or (byte)',')) end++;
            if (TryParsePort(text[i..end], out ep)) return true;
            i = end;
        }
        return false;
    }

    /// <summary>The port a 229 reply names: `(<d><d><d>port<d>)` with one delimiter character.</summary>
    public static bool TryParseEpsvReply(ReadOnlySpan<byte> text, out int port)
    {
        port = 0;
        int open = text.IndexOf((byte)'(');
        if (open < 0) return false;
        var s = text[(open + 1)..];
        int close = s.IndexOf((byte)')');
        if (close < 5) return false;
        s = s[..close];
        byte d = s[0];
        if (d is < 33 or > 126 || s[1] != d || s[2] != d || s[^1] != d) return false;
        var digits = s[3..^1];
        if (digits.Length > 5 || !FtpCommandParser.TryNumber(digits, out var p) || p is < 1 or > 65535) return false;
        port = (int)p;
        return true;
    }

    /// <summary>`h1,h2,h3,h4,p1,p2` for an IPv4 (or IPv4-mapped) address.</summary>
    public static string FormatHostPort(IPAddress address, int port)
    {
        var b = address.MapToIPv4().GetAddressBytes();
        return $"{b[0]},{b[1]},{b[2]},{b[3]},{port >> 8},{port & 0xFF}";
    }

    public static string PasvReply(IPAddress address, int port) => $"227 Entering Passive Mode ({FormatHostPort(address, port)}).";

    public static string EpsvReply(int port) => $"229 Entering Extended Passive Mode (|||{port}|)";

    /// <summary>The command that tells a server where to connect: PORT for IPv4, EPRT for IPv6 (or when asked).</summary>
    public static string ActiveCommand(IPEndPoint ep, bool extended)
    {
        var a = ep.Address.IsIPv4MappedToIPv6 ? ep.Address.MapToIPv4() : ep.Address;
        if (!extended && a.AddressFamily == AddressFamily.InterNetwork) return $"PORT {FormatHostPort(a, ep.Port)}";
        return a.AddressFamily == AddressFamily.InterNetwork ? $"EPRT |1|{a}|{ep.Port}|" : $"EPRT |2|{a}|{ep.Port}|";
    }

    /// <summary>Whether two addresses are the same host (IPv4 and its IPv4-mapped IPv6 form are).</summary>
    public static bool SameHost(IPAddress a, IPAddress b)
    {
        if (a.IsIPv4MappedToIPv6) a = a.MapToIPv4();
        if (b.IsIPv4MappedToIPv6) b = b.MapToIPv4();
        return a.Equals(b);
    }

    public static byte[] Ascii(string s) => Encoding.ASCII.GetBytes(s);
}
