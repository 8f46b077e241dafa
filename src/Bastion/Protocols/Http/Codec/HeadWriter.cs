using System.Buffers;
using System.Buffers.Text;
using System.Text;

namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// Builds an outgoing head in a pooled byte buffer, rented on the first write and given back by <see cref="Release"/>
/// when the exchange is done (so that a connection between requests holds none). Field lines are copied from the
/// parsed head as received, in runs; only what the caller drops (hop-by-hop fields always, plus a mask of others) is
/// left out, and what it adds is appended.
/// </summary>
public sealed class HeadWriter(int capacity = 4096)
{
    byte[] _buf = [];
    int _pos;

    public int Length => _pos;
    public ReadOnlySpan<byte> Written => _buf.AsSpan(0, _pos);
    public ReadOnlyMemory<byte> WrittenMemory => _buf.AsMemory(0, _pos);

    /// <summary>The underlying array (body bytes may be appended after the head for one send).</summary>
    public byte[] Buffer => _buf;

    public void Reset() => _pos = 0;

    /// <summary>Gives the buffer back to the pool (what was written is gone); the next write rents one.</summary>
    public void Release()
    {
        _pos = 0;
        var b = _buf;
        if (b.Length == 0) return;
        _buf = [];
        Return(b);
    }

    /// <summary>
    /// Head-sized buffers (up to 8 KiB) come from a pool of their own. The shared pool keeps only 32 arrays of a size
    /// per core: with more exchanges than that waiting for their upstreams (each holding its request head for a
    /// retry), its returns were dropped and its rents allocated, 1.3 KB a request at 50 connections. Bounded: at most
    /// 1024 idle arrays of each size (4 KiB, 8 KiB), held only once that many exchanges were in flight at once.
    /// </summary>
    static readonly ArrayPool<byte> Heads = ArrayPool<byte>.Create(MaxPooledHead, 1024);
    const int MaxPooledHead = 8192;

    static byte[] Rent(int size) => size <= MaxPooledHead ? Heads.Rent(size) : ArrayPool<byte>.Shared.Rent(size);

    // The pool of an array is known from its length: Heads hands out at most MaxPooledHead, Shared more than that.
    static void Return(byte[] b)
    {
        if (b.Length <= MaxPooledHead) Heads.Return(b);
        else ArrayPool<byte>.Shared.Return(b);
    }

    /// <summary>Bit mask of <see cref="KnownHeader"/> values.</summary>
    public static ulong Mask(params ReadOnlySpan<KnownHeader> ids)
    {
        ulong m = 0;
        foreach (var id in ids) m |= 1UL << (int)id;
        return m;
    }

    /// <summary>Fields that never cross a proxy (RFC 9110 §7.6.1) plus the framing ones the writer re-makes.</summary>
    public static readonly ulong HopByHop = Mask(KnownHeader.Connection, KnownHeader.KeepAlive, KnownHeader.ProxyConnection,
        KnownHeader.TE, KnownHeader.Trailer, KnownHeader.Upgrade, KnownHeader.ProxyAuthorization, KnownHeader.ProxyAuthenticate,
        KnownHeader.TransferEncoding, KnownHeader.ContentLength);

    public Span<byte> GetSpan(int size)
    {
        if (_buf.Length - _pos < size) Grow(size);
        return _buf.AsSpan(_pos);
    }

    public void Advance(int n) => _pos += n;

    void Grow(int size)
    {
        var bigger = Rent(Math.Max(Math.Max(_buf.Length * 2, _pos + size), capacity));
        _buf.AsSpan(0, _pos).CopyTo(bigger);
        if (_buf.Length > 0) Return(_buf);
        _buf = bigger;
    }

    public HeadWriter Append(ReadOnlySpan<byte> bytes)
    {
        bytes.CopyTo(GetSpan(bytes.Length));
        _pos += bytes.Length;
        return this;
    }

    /// <summary>Text that came from the wire or config: one byte per char (Latin-1), so bytes round-trip.</summary>
    public HeadWriter Append(string s)
    {
        int n = Encoding.Latin1.GetBytes(s, GetSpan(s.Length));
        _pos += n;
        return this;
    }

    public HeadWriter Append(long v)
    {
        Utf8Formatter.TryFormat(v, GetSpan(20), out int n);
        _pos += n;
        return this;
    }

    public HeadWriter CrLf() => Append("\r\n"u8);

    public HeadWriter Field(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value) => Append(name).Append(": "u8).Append(value).CrLf();

    public HeadWriter Field(ReadOnlySpan<byte> name, string value) => Append(name).Append(": "u8).Append(value).CrLf();

    public HeadWriter Field(ReadOnlySpan<byte> name, long value) => Append(name).Append(": "u8).Append(value).CrLf();

    /// <summary>
    /// Copies the head's field lines as received, except hop-by-hop ones, fields its Connection header names, and
    /// those whose identity is in <paramref name="drop"/>; hop-by-hop fields in <paramref name="keep"/> stay (Upgrade on
    /// an upgrade). Consecutive kept lines go in one copy.
    /// </summary>
    public HeadWriter CopyFields(HttpHead h, ulong drop, ulong keep = 0)
    {
        drop = (drop | HopByHop) & ~keep;
        int runStart = -1, runEnd = -1;
        for (int i = 0; i < h.FieldCount; i++)
        {
            ref readonly var f = ref h[i];
            bool kept = !f.Listed && (drop & (1UL << (int)f.Id)) == 0;
            if (kept)
            {
                if (runStart < 0) runStart = f.Start;
                runEnd = f.End;
                continue;
            }
            if (runStart >= 0) Append(h.Slice(runStart, runEnd));
            runStart = -1;
        }
        if (runStart >= 0) Append(h.Slice(runStart, runEnd));
        return this;
    }

    /// <summary>The framing fields for a body framed as <paramref name="framing"/> (nothing for none or close-delimited).</summary>
    public HeadWriter Framing(BodyFraming framing)
    {
        if (framing.Kind == BodyKind.Length) Field("Content-Length"u8, framing.Length);
        else if (framing.Kind == BodyKind.Chunked) Append("Transfer-Encoding: chunked\r\n"u8);
        return this;
    }
}
