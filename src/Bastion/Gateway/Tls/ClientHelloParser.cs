using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Immutable;
using System.Text;

namespace Bastion.Gateway.Tls;

public enum HelloStatus { NeedMore, Parsed, NotTls, Malformed }

/// <summary>What the gateway needs from a TLS ClientHello to decide a tunnel: the name, the protocols, the versions.</summary>
public sealed record ClientHello(
    string? ServerName,
    ImmutableArray<string> Alpn,
    ushort LegacyVersion,
    ImmutableArray<ushort> SupportedVersions,
    int RecordBytes)
{
    /// <summary>The highest version offered (supported_versions when present, else legacy_version; GREASE ignored).</summary>
    public ushort MaxVersion
    {
        get
        {
            ushort max = 0;
            foreach (var v in SupportedVersions)
                if ((v & 0x0f0f) != 0x0a0a && v > max) max = v;
            return max != 0 ? max : LegacyVersion;
        }
    }
}

/// <summary>
/// Reads a TLS ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) from the first bytes a client sends, without
/// answering and without consuming: the caller keeps the bytes to replay them. Sans-I/O and bounded: the hello
/// may be split across several records (post-quantum key shares make it large), but never past
/// <see cref="DefaultMaxSize"/> bytes of records. Every prefix of a valid hello is <see cref="HelloStatus.NeedMore"/>.
/// </summary>
public static class ClientHelloParser
{
    public const int DefaultMaxSize = 16 * 1024;
    const byte HandshakeRecord = 22, ClientHelloType = 1;
    const ushort ExtServerName = 0, ExtAlpn = 16, ExtSupportedVersions = 43;

    public static HelloStatus TryParse(ReadOnlySequence<byte> input, out ClientHello? hello, out string? error,
        int maxSize = DefaultMaxSize)
    {
        hello = null;
        error = null;
        if (input.IsEmpty) return HelloStatus.NeedMore;
        if (input.FirstSpan[0] != HandshakeRecord)
        {
            error = "not TLS: the first byte is not a handshake record";
            return HelloStatus.NotTls;
        }
        int n = (int)Math.Min(input.Length, maxSize);
        byte[] rented = ArrayPool<byte>.Shared.Rent(n);
        byte[] hs = ArrayPool<byte>.Shared.Rent(n);
        try
        {
            input.Slice(0, n).CopyTo(rented);
            return Parse(rented.AsSpan(0, n), input.Length > maxSize, maxSize, hs, out hello, out error);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
            ArrayPool<byte>.Shared.Return(hs);
        }
    }

    static HelloStatus Parse(ReadOnlySpan<byte> data, bool truncated, int maxSize, byte[] hs, out ClientHello? hello, out string? error)
    {
        hello = null;
        error = null;
        // Gather the handshake bytes from consecutive records until the whole ClientHello is there.
        int pos = 0, have = 0, need = -1;
        while (true)
        {
            if (data.Length - pos < 5)
            {
                if (!Partial(data[pos..], out error)) return HelloStatus.Malformed;
                return Incomplete(truncated, maxSize, out error);
            }
            var header = data.Slice(pos, 5);
            if (header[0] != HandshakeRecord) return Bad(out error, $"record of type {header[0]} inside the ClientHello");
            if (header[1] != 3 || header[2] > 4) return Bad(out error, $"unknown record version {header[1]}.{header[2]}");
            int len = BinaryPrimitives.ReadUInt16BigEndian(header[3..]);
            if (len == 0) return Bad(out error, "empty handshake record");
            if (len > 16384) return Bad(out error, $"record of {len} bytes is over TLS's 16384");
            if (data.Length - pos - 5 < len) return Incomplete(truncated, maxSize, out error);
            data.Slice(pos + 5, len).CopyTo(hs.AsSpan(have));
            have += len;
            pos += 5 + len;
            if (need < 0 && have >= 4)
            {
                if (hs[0] != ClientHelloType) return Bad(out error, $"first handshake message is type {hs[0]}, not ClientHello");
                int bodyLen = (hs[1] << 16) | (hs[2] << 8) | hs[3];
                if (bodyLen + 4 > maxSize) return Bad(out error, $"ClientHello of {bodyLen} bytes is over the {maxSize}-byte limit");
                need = bodyLen + 4;
            }
            if (need >= 0 && have >= need)
            {
                if (have > need) return Bad(out error, "data after the ClientHello in its record");
                return ParseBody(hs.AsSpan(4, need - 4), pos, out hello, out error);
            }
        }
    }

    /// <summary>A record header cut short: check the bytes there are, so that garbage fails at once.</summary>
    static bool Partial(ReadOnlySpan<byte> h, out string? error)
    {
        error = null;
        if (h.Length >= 1 && h[0] != HandshakeRecord) error = $"record of type {h[0]} inside the ClientHello";
        else if (h.Length >= 2 && h[1] != 3) error = $"unknown record version {h[1]}";
        else if (h.Length >= 3 && h[2] > 4) error = $"unknown record version {h[1]}.{h[2]}";
        return error is null;
    }

    static HelloStatus Incomplete(bool truncated, int maxSize, out string? error)
    {
        if (truncated) return Bad(out error, $"ClientHello records exceed the {maxSize}-byte limit");
        error = null;
        return HelloStatus.NeedMore;
    }

    static HelloStatus Bad(out string? error, string why)
    {
        error = why;
        return HelloStatus.Malformed;
    }

    static HelloStatus ParseBody(ReadOnlySpan<byte> b, int recordBytes, out ClientHello? hello, out string? error)
    {
        hello = null;
        var r = new SpanCursor(b);
        if (!r.U16(out var legacyVersion) || (legacyVersion >> 8) != 3) return Bad(out error, "ClientHello version is not 3.x");
        if (!r.Skip(32)) return Bad(out error, "ClientHello cut short in random");
        if (!r.Vector8(out var sessionId) || sessionId.Length > 32) return Bad(out error, "bad session id");
        if (!r.Vector16(out var suites) || suites.Length < 2 || suites.Length % 2 != 0) return Bad(out error, "bad cipher suite list");
        if (!r.Vector8(out var compression) || compression.Length < 1) return Bad(out error, "bad compression method list");

        string? sni = null;
        var alpn = ImmutableArray<string>.Empty;
        var versions = ImmutableArray<ushort>.Empty;
        if (r.Remaining > 0)
        {
            if (!r.Vector16(out var extensions) || r.Remaining != 0) return Bad(out error, "extension block length does not match the ClientHello");
            var seen = new HashSet<ushort>();
            var e = new SpanCursor(extensions);
            while (e.Remaining > 0)
            {
                if (!e.U16(out var type) || !e.Vector16(out var body)) return Bad(out error, "extension cut short");
                if (!seen.Add(type)) return Bad(out error, $"extension {type} appears twice");
                switch (type)
                {
                    case ExtServerName:
                        if (!ParseServerName(body, out sni, out error)) return HelloStatus.Malformed;
                        break;
                    case ExtAlpn:
                        if (!ParseAlpn(body, out alpn, out error)) return HelloStatus.Malformed;
                        break;
                    case ExtSupportedVersions:
                        if (!ParseVersions(body, out versions, out error)) return HelloStatus.Malformed;
                        break;
                }
            }
        }
        else if (r.Remaining != 0) return Bad(out error, "trailing bytes in the ClientHello");
        hello = new ClientHello(sni, alpn, legacyVersion, versions, recordBytes);
        error = null;
        return HelloStatus.Parsed;
    }

    /// <summary>RFC 6066 §3: one host_name, LDH labels (underscores tolerated), stored lowercase without a trailing dot.</summary>
    static bool ParseServerName(ReadOnlySpan<byte> body, out string? name, out string? error)
    {
        name = null;
        error = null;
        var c = new SpanCursor(body);
        if (!c.Vector16(out var list) || c.Remaining != 0 || list.Length == 0) { error = "bad server_name extension"; return false; }
        var l = new SpanCursor(list);
        while (l.Remaining > 0)
        {
            if (!l.U8(out var nameType) || !l.Vector16(out var host)) { error = "bad server_name entry"; return false; }
            if (nameType != 0) continue;
            if (name is not null) { error = "more than one host_name in server_name"; return false; }
            if (host.Length > 0 && host[^1] == '.') host = host[..^1];
            if (host.Length is 0 or > 253) { error = "server name is empty or longer than 253 bytes"; return false; }
            int label = 0;
            foreach (var ch in host)
            {
                bool ok = ch is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9')
                    or (byte)'-' or (byte)'_' or (byte)'.';
                if (!ok) { error = "server name holds a byte that is not a letter, digit, '-', '_' or '.'"; return false; }
                if (ch == '.')
                {
                    if (label == 0) { error = "server name has an empty label"; return false; }
                    label = 0;
                }
                else if (++label > 63) { error = "server name has a label over 63 bytes"; return false; }
            }
            if (label == 0) { error = "server name has an empty label"; return false; }
            name = Encoding.ASCII.GetString(host).ToLowerInvariant();
        }
        return true;
    }

    static bool ParseAlpn(ReadOnlySpan<byte> body, out ImmutableArray<string> protocols, out string? error)
    {
        protocols = [];
        error = null;
        var c = new SpanCursor(body);
        if (!c.Vector16(out var list) || c.Remaining != 0 || list.Length == 0) { error = "bad ALPN extension"; return false; }
        var b = ImmutableArray.CreateBuilder<string>();
        var l = new SpanCursor(list);
        while (l.Remaining > 0)
        {
            if (!l.Vector8(out var p) || p.Length == 0) { error = "bad ALPN protocol name"; return false; }
            b.Add(Encoding.Latin1.GetString(p));
        }
        protocols = b.ToImmutable();
        return true;
    }

    static bool ParseVersions(ReadOnlySpan<byte> body, out ImmutableArray<ushort> versions, out string? error)
    {
        versions = [];
        error = null;
        var c = new SpanCursor(body);
        if (!c.Vector8(out var list) || c.Remaining != 0 || list.Length < 2 || list.Length % 2 != 0) { error = "bad supported_versions extension"; return false; }
        var b = ImmutableArray.CreateBuilder<ushort>(list.Length / 2);
        for (int i = 0; i < list.Length; i += 2) b.Add(BinaryPrimitives.ReadUInt16BigEndian(list[i..]));
        versions = b.MoveToImmutable();
        return true;
    }

    /// <summary>Reads TLS's length-prefixed fields off a span; every read says whether the bytes were there.</summary>
    ref struct SpanCursor(ReadOnlySpan<byte> data)
    {
        ReadOnlySpan<byte> _rest = data;
        public readonly int Remaining => _rest.Length;

        public bool U8(out byte v)
        {
            v = 0;
            if (_rest.Length < 1) return false;
            v = _rest[0];
            _rest = _rest[1..];
            return true;
        }

        public bool U16(out ushort v)
        {
            v = 0;
            if (_rest.Length < 2) return false;
            v = BinaryPrimitives.ReadUInt16BigEndian(_rest);
            _rest = _rest[2..];
            return true;
        }

        public bool Skip(int n)
        {
            if (_rest.Length < n) return false;
            _rest = _rest[n..];
            return true;
        }

        public bool Vector8(out ReadOnlySpan<byte> v)
        {
            v = default;
            if (!U8(out var len) || _rest.Length < len) return false;
            v = _rest[..len];
            _rest = _rest[len..];
            return true;
        }

        public bool Vector16(out ReadOnlySpan<byte> v)
        {
            v = default;
            if (!U16(out var len) || _rest.Length < len) return false;
            v = _rest[..len];
            _rest = _rest[len..];
            return true;
        }
    }
}
