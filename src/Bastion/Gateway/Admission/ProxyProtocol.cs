using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Bastion.Configuration;

namespace Bastion.Gateway;

public enum ProxyParseStatus { NeedMore, Parsed, Malformed }

/// <summary>
/// A parsed PROXY protocol header. <see cref="Source"/>/<see cref="Destination"/> are null for LOCAL (v2),
/// UNKNOWN (v1) and address families that carry no IP (UNIX, UNSPEC): the connection's own peer stands.
/// </summary>
public sealed record ProxyHeader(int Version, bool IsLocal, IPEndPoint? Source, IPEndPoint? Destination, int Length)
{
    /// <summary>v2 PP2_TYPE_AUTHORITY (the host name the client asked for, e.g. TLS SNI).</summary>
    public string? Authority { get; init; }
    /// <summary>v2 PP2_SUBTYPE_SSL_CN: the client certificate's common name, when the front verified it.</summary>
    public string? VerifiedClientCn { get; init; }
}

/// <summary>
/// PROXY protocol v1 (text) and v2 (binary), sans I/O: <see cref="TryParse(ReadOnlySpan{byte}, out ProxyHeader?, out string?, int)"/>
/// works on whatever bytes have arrived and says need-more, parsed (with the header's length) or malformed.
/// Read by <see cref="Admission"/> for every listener, socket-based and Kestrel-based alike.
/// See https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt.
/// </summary>
public static class ProxyProtocol
{
    public static ReadOnlySpan<byte> V2Signature => [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    static ReadOnlySpan<byte> V1Prefix => "PROXY "u8;

    /// <summary>The longest a v1 line may be (spec: 107 bytes including CRLF).</summary>
    public const int V1MaxLength = 107;
    /// <summary>Default bound for a whole v2 header (16 bytes + addresses + TLVs).</summary>
    public const int DefaultMaxLength = 4096;

    public static ProxyParseStatus TryParse(in ReadOnlySequence<byte> data, out ProxyHeader? header, out string? error,
        int maxLength = DefaultMaxLength)
    {
        if (data.IsSingleSegment) return TryParse(data.FirstSpan, out header, out error, maxLength);
        // Only the first maxLength bytes can matter.
        int n = (int)Math.Min(data.Length, maxLength);
        var copy = ArrayPool<byte>.Shared.Rent(n);
        try
        {
            data.Slice(0, n).CopyTo(copy);
            return TryParse(copy.AsSpan(0, n), out header, out error, maxLength);
        }
        finally { ArrayPool<byte>.Shared.Return(copy); }
    }

    public static ProxyParseStatus TryParse(ReadOnlySpan<byte> data, out ProxyHeader? header, out string? error,
        int maxLength = DefaultMaxLength)
    {
        header = null;
        error = null;
        if (data.IsEmpty) return ProxyParseStatus.NeedMore;
        if (data[0] == 0x0D)
        {
            int k = Math.Min(data.Length, V2Signature.Length);
            if (!data[..k].SequenceEqual(V2Signature[..k])) return Bad("not a PROXY v2 signature", out error);
            return data.Length < 16 ? ProxyParseStatus.NeedMore : ParseV2(data, out header, out error, maxLength);
        }
        if (data[0] == (byte)'P')
        {
            int k = Math.Min(data.Length, V1Prefix.Length);
            if (!data[..k].SequenceEqual(V1Prefix[..k])) return Bad("not a PROXY header", out error);
            return ParseV1(data, out header, out error);
        }
        return Bad("connection does not start with a PROXY header", out error);
    }

    static ProxyParseStatus Bad(string why, out string? error)
    {
        error = why;
        return ProxyParseStatus.Malformed;
    }

    static ProxyParseStatus ParseV1(ReadOnlySpan<byte> data, out ProxyHeader? header, out string? error)
    {
        header = null;
        error = null;
        int lf = data[..Math.Min(data.Length, V1MaxLength)].IndexOf((byte)'\n');
        if (lf < 0) return data.Length >= V1MaxLength ? Bad("PROXY v1 line too long", out error) : ProxyParseStatus.NeedMore;
        if (lf == 0 || data[lf - 1] != '\r') return Bad("PROXY v1 line must end with CRLF", out error);
        var line = data[V1Prefix.Length..(lf - 1)];
        int length = lf + 1;
        Span<Range> parts = stackalloc Range[6];
        int count = 0, start = 0;
        while (count < parts.Length)
        {
            int sp = line[start..].IndexOf((byte)' ');
            int end = sp < 0 ? line.Length : start + sp;
            parts[count++] = new Range(start, end);
            if (sp < 0) break;
            start = end + 1;
        }
        var proto = line[parts[0]];
        if (proto.SequenceEqual("UNKNOWN"u8))
        {
            // "PROXY UNKNOWN" may carry anything after it; the receiver keeps the connection's own addresses.
            header = new ProxyHeader(1, false, null, null, length);
            return ProxyParseStatus.Parsed;
        }
        bool v4 = proto.SequenceEqual("TCP4"u8);
        if (!v4 && !proto.SequenceEqual("TCP6"u8)) return Bad("PROXY v1: protocol must be TCP4, TCP6 or UNKNOWN", out error);
        if (count != 5) return Bad("PROXY v1: expected 'PROXY TCPx SRC DST SPORT DPORT'", out error);
        if (!TryIp(line[parts[1]], v4, out var src) || !TryIp(line[parts[2]], v4, out var dst))
            return Bad("PROXY v1: bad address", out error);
        if (!TryPort(line[parts[3]], out var sport) || !TryPort(line[parts[4]], out var dport))
            return Bad("PROXY v1: bad port", out error);
        header = new ProxyHeader(1, false, new IPEndPoint(src!, sport), new IPEndPoint(dst!, dport), length);
        return ProxyParseStatus.Parsed;
    }

    static bool TryIp(ReadOnlySpan<byte> s, bool v4, out IPAddress? ip)
    {
        ip = null;
        if (s.IsEmpty || s.Length > 45) return false;
        Span<char> chars = stackalloc char[s.Length];
        for (int i = 0; i < s.Length; i++)
        {
            byte b = s[i];
            if (!(b is >= (byte)'0' and <= (byte)'9' or >= (byte)'a' and <= (byte)'f' or >= (byte)'A' and <= (byte)'F' or (byte)'.' or (byte)':'))
                return false;
            chars[i] = (char)b;
        }
        if (!IPAddress.TryParse(chars, out ip)) return false;
        return v4 ? ip.AddressFamily == AddressFamily.InterNetwork : ip.AddressFamily == AddressFamily.InterNetworkV6;
    }

    static bool TryPort(ReadOnlySpan<byte> s, out int port)
    {
        port = 0;
        if (s.IsEmpty || s.Length > 5 || (s.Length > 1 && s[0] == '0')) return false;
        foreach (var b in s)
        {
            if (b is < (byte)'0' or > (byte)'9') return false;
            port = port * 10 + (b - '0');
        }
        return port <= 65535;
    }

    static ProxyParseStatus ParseV2(ReadOnlySpan<byte> data, out ProxyHeader? header, out string? error, int maxLength)
    {
        header = null;
        error = null;
        byte verCmd = data[12];
        if (verCmd >> 4 != 2) return Bad("PROXY v2: version must be 2", out error);
        int cmd = verCmd & 0x0F;
        if (cmd > 1) return Bad("PROXY v2: unknown command", out error);
        byte fam = data[13];
        int len = BinaryPrimitives.ReadUInt16BigEndian(data[14..]);
        int total = 16 + len;
        if (total > maxLength) return Bad($"PROXY v2 header longer than {maxLength} bytes", out error);
        if (data.Length < total) return ProxyParseStatus.NeedMore;
        var body = data[16..total];
        bool local = cmd == 0;
        IPEndPoint? src = null, dst = null;
        int addrLen;
        switch (fam >> 4)
        {
            case 0: addrLen = 0; break;
            case 1:
                addrLen = 12;
                if (body.Length < addrLen) return Bad("PROXY v2: address block too short for IPv4", out error);
                src = new IPEndPoint(new IPAddress(body[..4]), BinaryPrimitives.ReadUInt16BigEndian(body[8..]));
                dst = new IPEndPoint(new IPAddress(body[4..8]), BinaryPrimitives.ReadUInt16BigEndian(body[10..]));
                break;
            case 2:
                addrLen = 36;
                if (body.Length < addrLen) return Bad("PROXY v2: address block too short for IPv6", out error);
                src = new IPEndPoint(new IPAddress(body[..16]), BinaryPrimitives.ReadUInt16BigEndian(body[32..]));
                dst = new IPEndPoint(new IPAddress(body[16..32]), BinaryPrimitives.ReadUInt16BigEndian(body[34..]));
                break;
            case 3:
                addrLen = 216;
                if (body.Length < addrLen) return Bad("PROXY v2: address block too short for UNIX", out error);
                break;
            default: return Bad("PROXY v2: unknown address family", out error);
        }
        if ((fam & 0x0F) > 2) return Bad("PROXY v2: unknown transport protocol", out error);
        if (local) { src = null; dst = null; }
        string? authority = null, cn = null;
        if (!ParseTlvs(body[addrLen..], ref authority, ref cn, out error)) return ProxyParseStatus.Malformed;
        header = new ProxyHeader(2, local, src, dst, total) { Authority = authority, VerifiedClientCn = cn };
        return ProxyParseStatus.Parsed;
    }

    const byte Pp2TypeAuthority = 0x02, Pp2TypeSsl = 0x20, Pp2SubtypeSslCn = 0x22;

    static bool ParseTlvs(ReadOnlySpan<byte> tlvs, ref string? authority, ref string? cn, out string? error)
    {
        error = null;
        while (!tlvs.IsEmpty)
        {
            if (tlvs.Length < 3) { error = "PROXY v2: truncated TLV"; return false; }
            byte type = tlvs[0];
            int len = BinaryPrimitives.ReadUInt16BigEndian(tlvs[1..]);
            if (tlvs.Length < 3 + len) { error = "PROXY v2: TLV longer than the header"; return false; }
            var value = tlvs.Slice(3, len);
            if (type == Pp2TypeAuthority) authority = Printable(value);
            else if (type == Pp2TypeSsl && len >= 5)
            {
                // client bits (1), verify (4, 0 = verified), then sub-TLVs.
                bool certVerified = (value[0] & 0x02) != 0 && BinaryPrimitives.ReadUInt32BigEndian(value[1..]) == 0;
                var sub = value[5..];
                while (sub.Length >= 3)
                {
                    int sl = BinaryPrimitives.ReadUInt16BigEndian(sub[1..]);
                    if (sub.Length < 3 + sl) break;
                    if (sub[0] == Pp2SubtypeSslCn && certVerified) cn = Printable(sub.Slice(3, sl));
                    sub = sub[(3 + sl)..];
                }
            }
            tlvs = tlvs[(3 + len)..];
        }
        return true;
    }

    static string? Printable(ReadOnlySpan<byte> v)
    {
        if (v.IsEmpty || v.Length > 255) return null;
        foreach (var b in v) if (b is < 0x21 or > 0x7E) return null;
        return Encoding.ASCII.GetString(v);
    }

    // ---- writer ----

    /// <summary>The header that tells an upstream who the client really is (tcp listeners' `proxy_protocol`).</summary>
    public static byte[] Build(ProxyProtocolVersion version, IPEndPoint source, IPEndPoint destination) => version switch
    {
        ProxyProtocolVersion.V1 => BuildV1(source, destination),
        ProxyProtocolVersion.V2 => BuildV2(source, destination),
        _ => [],
    };

    /// <summary>Both addresses in one family: IPv4-mapped IPv6 becomes IPv4; a remaining mismatch maps IPv4 into IPv6.</summary>
    static (IPAddress Src, IPAddress Dst) SameFamily(IPAddress s, IPAddress d)
    {
        if (s.IsIPv4MappedToIPv6) s = s.MapToIPv4();
        if (d.IsIPv4MappedToIPv6) d = d.MapToIPv4();
        if (s.AddressFamily != d.AddressFamily)
        {
            s = s.MapToIPv6();
            d = d.MapToIPv6();
        }
        return (s, d);
    }

    public static byte[] BuildV1(IPEndPoint source, IPEndPoint destination)
    {
        var (s, d) = SameFamily(source.Address, destination.Address);
        var proto = s.AddressFamily == AddressFamily.InterNetwork ? "TCP4" : "TCP6";
        return Encoding.ASCII.GetBytes($"PROXY {proto} {s} {d} {source.Port} {destination.Port}\r\n");
    }

    public static byte[] BuildV2(IPEndPoint source, IPEndPoint destination, bool local = false)
    {
        var (s, d) = SameFamily(source.Address, destination.Address);
        bool v4 = s.AddressFamily == AddressFamily.InterNetwork;
        int addrLen = v4 ? 12 : 36;
        var h = new byte[16 + addrLen];
        V2Signature.CopyTo(h);
        h[12] = (byte)(0x20 | (local ? 0 : 1));
        h[13] = (byte)((v4 ? 0x10 : 0x20) | 0x01);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(14), (ushort)addrLen);
        int ipLen = v4 ? 4 : 16;
        s.TryWriteBytes(h.AsSpan(16, ipLen), out _);
        d.TryWriteBytes(h.AsSpan(16 + ipLen, ipLen), out _);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(16 + 2 * ipLen), (ushort)source.Port);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(18 + 2 * ipLen), (ushort)destination.Port);
        return h;
    }

    // ---- reading from a connection ----

    /// <summary>
    /// Takes exactly one PROXY header off the connection's input pipe, nothing past it: what follows (TLS, HTTP,
    /// SOCKS...) stays in the pipe for the protocol. Null with a reason when the front sent something else, too
    /// much, or nothing in time. The one reader for socket listeners and Kestrel's alike.
    /// </summary>
    public static async Task<(ProxyHeader? Header, string? Error)> ReadAsync(PipeReader input, TimeSpan timeout,
        CancellationToken ct, int maxLength = DefaultMaxLength)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(cts.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                switch (TryParse(buffer, out var header, out var error, maxLength))
                {
                    case ProxyParseStatus.Parsed:
                        input.AdvanceTo(buffer.GetPosition(header!.Length));
                        return (header, null);
                    case ProxyParseStatus.Malformed:
                        input.AdvanceTo(buffer.Start);
                        return (null, error);
                }
                if (buffer.Length >= maxLength)
                {
                    input.AdvanceTo(buffer.Start);
                    return (null, "PROXY header too long");
                }
                if (result.IsCompleted)
                {
                    input.AdvanceTo(buffer.Start);
                    return (null, "connection closed before a PROXY header");
                }
                // Incomplete: keep it all and wait for more.
                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        catch (OperationCanceledException)
        {
            return (null, ct.IsCancellationRequested ? "connection closed before a PROXY header" : "no PROXY header in time");
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            return (null, "connection closed before a PROXY header");
        }
    }
}
