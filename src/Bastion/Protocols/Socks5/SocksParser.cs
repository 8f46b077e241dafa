using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;

using Bastion.Policy.Canonical;

namespace Bastion.Protocols.Socks5;

public enum SocksParse { NeedMore, Done, Malformed }

/// <summary>RFC 1928 reply codes (and SOCKS4's two).</summary>
public static class SocksReply
{
    public const byte Succeeded = 0x00, GeneralFailure = 0x01, NotAllowed = 0x02, NetworkUnreachable = 0x03,
        HostUnreachable = 0x04, ConnectionRefused = 0x05, TtlExpired = 0x06, CommandNotSupported = 0x07,
        AddressTypeNotSupported = 0x08;
    public const byte Socks4Granted = 0x5A, Socks4Rejected = 0x5B;

    public static byte FromSocketError(SocketError e) => e switch
    {
        SocketError.ConnectionRefused => ConnectionRefused,
        SocketError.HostUnreachable or SocketError.HostNotFound or SocketError.NoData or SocketError.TryAgain or SocketError.HostDown => HostUnreachable,
        SocketError.NetworkUnreachable or SocketError.NetworkDown => NetworkUnreachable,
        SocketError.TimedOut => TtlExpired,
        SocketError.AccessDenied => NotAllowed,
        _ => GeneralFailure,
    };
}

/// <summary>A target as the client named it: an IP literal, or a domain name that the gateway resolves after asking the policy.</summary>
public readonly record struct SocksTarget(IPAddress? Address, string? Domain, int Port)
{
    /// <summary>What the policy sees as `host`: the lower-case name, or the IP's text.</summary>
    public string Host => Domain ?? Address!.ToString();

    public override string ToString() =>
        Domain is not null ? $"{Domain}:{Port}" : Address!.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{Address}]:{Port}" : $"{Address}:{Port}";
}

public readonly record struct Socks5Request(byte Command, SocksTarget Target, int Length);

public readonly record struct Socks4Request(byte Command, SocksTarget Target, string UserId, int Length);

/// <summary>
/// SOCKS message parsing, sans I/O: each method looks at the bytes received so far and says need-more, done
/// (with the message's length) or malformed. Every length is bounded by the message format itself (at most
/// 255-byte fields), so a peer cannot make the gateway buffer more than a few hundred bytes.
/// </summary>
public static class SocksParser
{
    public const byte MethodNoAuth = 0x00, MethodUserPass = 0x02, MethodNone = 0xFF;
    public const byte CmdConnect = 0x01, CmdBind = 0x02, CmdUdpAssociate = 0x03;
    public const byte AtypIPv4 = 0x01, AtypDomain = 0x03, AtypIPv6 = 0x04;

    /// <summary>VER NMETHODS METHODS: which of the methods the gateway speaks the client offers.</summary>
    public static SocksParse Greeting(ReadOnlySpan<byte> d, out bool noAuth, out bool userPass, out int length)
    {
        noAuth = userPass = false;
        length = 0;
        if (d.Length < 2) return SocksParse.NeedMore;
        if (d[0] != 5 || d[1] == 0) return SocksParse.Malformed;
        length = 2 + d[1];
        if (d.Length < length) return SocksParse.NeedMore;
        foreach (var m in d[2..length])
        {
            if (m == MethodNoAuth) noAuth = true;
            else if (m == MethodUserPass) userPass = true;
        }
        return SocksParse.Done;
    }

    /// <summary>RFC 1929: VER(1) ULEN UNAME PLEN PASSWD.</summary>
    public static SocksParse UserPass(ReadOnlySpan<byte> d, out string user, out string password, out int length)
    {
        user = password = "";
        length = 0;
        if (d.Length < 2) return SocksParse.NeedMore;
        if (d[0] != 1 || d[1] == 0) return SocksParse.Malformed;
        int ulen = d[1];
        if (d.Length < 3 + ulen) return SocksParse.NeedMore;
        int plen = d[2 + ulen];
        length = 3 + ulen + plen;
        if (d.Length < length) return SocksParse.NeedMore;
        try
        {
            var strict = new UTF8Encoding(false, true);
            user = strict.GetString(d.Slice(2, ulen));
            password = strict.GetString(d.Slice(3 + ulen, plen));
        }
        catch (DecoderFallbackException) { return SocksParse.Malformed; }
        return SocksParse.Done;
    }

    /// <summary>
    /// VER CMD RSV ATYP DST.ADDR DST.PORT. <paramref name="reply"/> is the code to send when malformed
    /// (0x08 for an unknown address type, 0x01 otherwise).
    /// </summary>
    public static SocksParse Request(ReadOnlySpan<byte> d, out Socks5Request request, out byte reply)
    {
        request = default;
        reply = SocksReply.GeneralFailure;
        if (d.Length < 4) return SocksParse.NeedMore;
        if (d[0] != 5) return SocksParse.Malformed;
        var r = Address(d[3..], out var target, out reply);
        if (r != SocksParse.Done) return r;
        int len = 3 + AddressLength(d[3..]);
        request = new Socks5Request(d[1], target, len);
        return SocksParse.Done;
    }

    /// <summary>The UDP request header of RFC 1928 section 7: RSV(2) FRAG ATYP DST.ADDR DST.PORT; returns the header length or -1.</summary>
    public static int UdpHeader(ReadOnlySpan<byte> d, out byte frag, out SocksTarget target)
    {
        frag = 0;
        target = default;
        if (d.Length < 4 || d[0] != 0 || d[1] != 0) return -1;
        frag = d[2];
        if (Address(d[3..], out target, out _) != SocksParse.Done) return -1;
        return 3 + AddressLength(d[3..]);
    }

    /// <summary>ATYP ADDR PORT starting at <paramref name="d"/>[0].</summary>
    static SocksParse Address(ReadOnlySpan<byte> d, out SocksTarget target, out byte reply)
    {
        target = default;
        reply = SocksReply.GeneralFailure;
        if (d.IsEmpty) return SocksParse.NeedMore;
        switch (d[0])
        {
            case AtypIPv4:
                if (d.Length < 7) return SocksParse.NeedMore;
                target = new SocksTarget(new IPAddress(d.Slice(1, 4)), null, BinaryPrimitives.ReadUInt16BigEndian(d[5..]));
                return SocksParse.Done;
            case AtypIPv6:
                if (d.Length < 19) return SocksParse.NeedMore;
                var v6 = new IPAddress(d.Slice(1, 16));
                target = new SocksTarget(v6.IsIPv4MappedToIPv6 ? v6.MapToIPv4() : v6, null, BinaryPrimitives.ReadUInt16BigEndian(d[17..]));
                return SocksParse.Done;
            case AtypDomain:
                if (d.Length < 2) return SocksParse.NeedMore;
                int n = d[1];
                if (n == 0) return SocksParse.Malformed;
                if (d.Length < 2 + n + 2) return SocksParse.NeedMore;
                if (!TryDomain(d.Slice(2, n), out var t)) return SocksParse.Malformed;
                int port = BinaryPrimitives.ReadUInt16BigEndian(d[(2 + n)..]);
                target = t is IPAddress ip ? new SocksTarget(ip, null, port) : new SocksTarget(null, (string)t!, port);
                return SocksParse.Done;
            default:
                reply = SocksReply.AddressTypeNotSupported;
                return SocksParse.Malformed;
        }
    }

    static int AddressLength(ReadOnlySpan<byte> d) => d[0] switch
    {
        AtypIPv4 => 1 + 4 + 2,
        AtypIPv6 => 1 + 16 + 2,
        _ => 1 + 1 + d[1] + 2,
    };

    /// <summary>
    /// A host name in the one form that is judged and resolved (<see cref="HostName"/>): lower-cased, without a
    /// trailing dot, IDN (UTF-8) as punycode; or an IP literal sent as a name, in any spelling a resolver would
    /// accept (`127.1`, `0x7f.1`), as that address (then no lookup happens). Anything else is refused before the
    /// policy sees it.
    /// </summary>
    public static bool TryDomain(ReadOnlySpan<byte> raw, out object? result)
    {
        result = null;
        if (raw.IsEmpty || raw.Length > 255 || !System.Text.Unicode.Utf8.IsValid(raw)) return false;
        if (!HostName.TryNormalize(System.Text.Encoding.UTF8.GetString(raw), out var host, out _)) return false;
        result = IPAddress.TryParse(host, out var ip) ? (ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip) : host;
        return true;
    }

    /// <summary>SOCKS4/4a: VN(4) CD DSTPORT(2) DSTIP(4) USERID NUL [HOST NUL when DSTIP is 0.0.0.x, x != 0].</summary>
    public static SocksParse Socks4(ReadOnlySpan<byte> d, out Socks4Request request)
    {
        request = default;
        if (d.Length < 9) return SocksParse.NeedMore;
        if (d[0] != 4) return SocksParse.Malformed;
        int port = BinaryPrimitives.ReadUInt16BigEndian(d[2..]);
        var ipBytes = d.Slice(4, 4);
        int nul = d[8..].IndexOf((byte)0);
        if (nul < 0) return d.Length - 8 > 255 ? SocksParse.Malformed : SocksParse.NeedMore;
        if (nul > 255) return SocksParse.Malformed;
        string userId;
        try { userId = new UTF8Encoding(false, true).GetString(d.Slice(8, nul)); }
        catch (DecoderFallbackException) { return SocksParse.Malformed; }
        int len = 8 + nul + 1;
        bool socks4a = ipBytes[0] == 0 && ipBytes[1] == 0 && ipBytes[2] == 0 && ipBytes[3] != 0;
        SocksTarget target;
        if (socks4a)
        {
            var rest = d[len..];
            int hnul = rest.IndexOf((byte)0);
            if (hnul < 0) return rest.Length > 255 ? SocksParse.Malformed : SocksParse.NeedMore;
            if (hnul == 0 || hnul > 255 || !TryDomain(rest[..hnul], out var t)) return SocksParse.Malformed;
            target = t is IPAddress ip ? new SocksTarget(ip, null, port) : new SocksTarget(null, (string)t!, port);
            len += hnul + 1;
        }
        else target = new SocksTarget(new IPAddress(ipBytes), null, port);
        request = new Socks4Request(d[1], target, userId, len);
        return SocksParse.Done;
    }

    /// <summary>Writes VER REP RSV ATYP BND.ADDR BND.PORT; returns its length (at most 22).</summary>
    public static int WriteReply(Span<byte> into, byte reply, IPEndPoint? bound)
    {
        into[0] = 5;
        into[1] = reply;
        into[2] = 0;
        return 3 + WriteAddress(into[3..], bound);
    }

    /// <summary>ATYP ADDR PORT for an IP endpoint (0.0.0.0:0 when null); returns its length.</summary>
    public static int WriteAddress(Span<byte> into, IPEndPoint? ep)
    {
        var ip = ep?.Address ?? IPAddress.Any;
        if (ip.IsIPv4MappedToIPv6) ip = ip.MapToIPv4();
        bool v4 = ip.AddressFamily == AddressFamily.InterNetwork;
        into[0] = v4 ? AtypIPv4 : AtypIPv6;
        int n = v4 ? 4 : 16;
        ip.TryWriteBytes(into.Slice(1, n), out _);
        BinaryPrimitives.WriteUInt16BigEndian(into[(1 + n)..], (ushort)(ep?.Port ?? 0));
        return 1 + n + 2;
    }
}
