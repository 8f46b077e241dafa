using System.Runtime.CompilerServices;
using System.Text;
using Bastion.Policy;

namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// A parsed message head: a private copy of its bytes (reused from message to message on a connection) and the
/// offsets of each field in it. Nothing is decoded into strings unless someone asks; writers copy the original
/// bytes. Field names keep their case; lookups ignore it.
/// </summary>
public abstract class HttpHead : IHeaderSource
{
    /// <summary>One field line: offsets into <see cref="Bytes"/>.</summary>
    public struct Field
    {
        public int Start;       // first byte of the name
        public int NameEnd;     // the colon
        public int ValueStart;  // value without OWS
        public int ValueEnd;
        public int End;         // just past the line's CRLF
        public KnownHeader Id;
        /// <summary>Named by a Connection field: hop-by-hop for this message (RFC 9110 §7.6.1).</summary>
        public bool Listed;
    }

    byte[] _bytes = new byte[1024];
    int _length;
    Field[] _fields = new Field[16];
    int _count;

    /// <summary>The head as received, start line to the blank line (empty lines before a request line excluded).</summary>
    public ReadOnlySpan<byte> Bytes => _bytes.AsSpan(0, _length);

    /// <summary>Bytes of input the head took, including empty lines before it.</summary>
    public int WireLength { get; internal set; }

    /// <summary>Where the first field line starts (just past the start line's CRLF).</summary>
    public int FieldsStart { get; internal set; }

    /// <summary>0 for HTTP/1.0, 1 for HTTP/1.1.</summary>
    public int MinorVersion { get; internal set; }

    public int FieldCount => _count;

    public ref readonly Field this[int i] => ref _fields[i];

    public ReadOnlySpan<byte> Name(int i) => _bytes.AsSpan(_fields[i].Start, _fields[i].NameEnd - _fields[i].Start);

    public ReadOnlySpan<byte> Value(int i) => _bytes.AsSpan(_fields[i].ValueStart, _fields[i].ValueEnd - _fields[i].ValueStart);

    /// <summary>The whole field line with its CRLF, as received.</summary>
    public ReadOnlySpan<byte> Line(int i) => _bytes.AsSpan(_fields[i].Start, _fields[i].End - _fields[i].Start);

    public ReadOnlySpan<byte> Slice(int start, int end) => _bytes.AsSpan(start, end - start);

    /// <summary>The framing of this message's body, decided when the head was parsed.</summary>
    public BodyFraming Framing { get; internal set; }

    /// <summary>Connection: close was sent (or HTTP/1.0 without keep-alive): the connection ends after this message.</summary>
    public bool Close { get; internal set; }

    /// <summary>Connection names `upgrade` and an Upgrade field is present.</summary>
    public bool Upgrade { get; internal set; }

    internal virtual void Reset()
    {
        _length = 0;
        _count = 0;
        WireLength = 0;
        FieldsStart = 0;
        MinorVersion = 1;
        Framing = BodyFraming.Empty;
        Close = false;
        Upgrade = false;
    }

    /// <summary>Copies the head's bytes in (the parser found it whole) and keeps them.</summary>
    internal void SetBytes(ReadOnlySpan<byte> head)
    {
        if (_bytes.Length < head.Length) _bytes = new byte[Math.Max(head.Length, _bytes.Length * 2)];
        head.CopyTo(_bytes);
        _length = head.Length;
    }

    /// <summary>The buffer the parser may copy input into before parsing it in place (multi-segment input).</summary>
    internal byte[] Scratch(int size)
    {
        if (_bytes.Length < size) _bytes = new byte[Math.Max(size, _bytes.Length * 2)];
        return _bytes;
    }

    internal bool AddField(int start, int nameEnd, int valueStart, int valueEnd, int end, KnownHeader id, int maxFields)
    {
        if (_count == maxFields) return false;
        if (_count == _fields.Length) Array.Resize(ref _fields, _fields.Length * 2);
        _fields[_count++] = new Field { Start = start, NameEnd = nameEnd, ValueStart = valueStart, ValueEnd = valueEnd, End = end, Id = id };
        return true;
    }

    internal void MarkListed(int i) => _fields[i].Listed = true;

    /// <summary>Index of the first field with this identity, or -1.</summary>
    public int IndexOf(KnownHeader id, int from = 0)
    {
        for (int i = from; i < _count; i++)
            if (_fields[i].Id == id) return i;
        return -1;
    }

    public int Count(KnownHeader id)
    {
        int n = 0;
        for (int i = 0; i < _count; i++)
            if (_fields[i].Id == id) n++;
        return n;
    }

    /// <summary>True when a list-valued field (Connection, Expect, Upgrade) holds the token (ASCII case-insensitive).</summary>
    public bool HasToken(KnownHeader id, ReadOnlySpan<byte> lowerToken)
    {
        for (int i = 0; i < _count; i++)
        {
            if (_fields[i].Id != id) continue;
            var list = new HttpChars.ListReader(Value(i));
            while (list.Next(out var e))
                if (HttpChars.EqualsLower(e, lowerToken)) return true;
        }
        return false;
    }

    /// <summary>Index of the first field with this name (ASCII case-insensitive), or -1.</summary>
    public int IndexOf(string name)
    {
        for (int i = 0; i < _count; i++)
            if (HttpChars.EqualsIgnoreCase(Name(i), name)) return i;
        return -1;
    }

    /// <summary>IHeaderSource for policy `header:` conditions: the value as Latin-1 text, several joined by ", ".</summary>
    public string? Get(string name)
    {
        int first = IndexOf(name);
        if (first < 0) return null;
        int second = -1;
        for (int i = first + 1; i < _count; i++)
            if (HttpChars.EqualsIgnoreCase(Name(i), name)) { second = i; break; }
        if (second < 0) return Latin1(Value(first));
        var sb = new StringBuilder(Latin1(Value(first)));
        for (int i = second; i < _count; i++)
            if (HttpChars.EqualsIgnoreCase(Name(i), name)) sb.Append(", ").Append(Latin1(Value(i)));
        return sb.ToString();
    }

    /// <summary>
    /// IHeaderSource: the <paramref name="index"/>-th field line with this name, as Latin-1 text. Header conditions
    /// judge every line, so that a second line cannot dilute a deny.
    /// </summary>
    public bool TryGetLine(string name, int index, out string value)
    {
        for (int i = 0; i < _count; i++)
        {
            if (!HttpChars.EqualsIgnoreCase(Name(i), name) || index-- > 0) continue;
            value = Latin1(Value(i));
            return true;
        }
        value = "";
        return false;
    }

    /// <summary>A field value or other part of the head as text: Latin-1, so that every byte maps to one char.</summary>
    public static string Latin1(ReadOnlySpan<byte> s) => s.IsEmpty ? "" : Encoding.Latin1.GetString(s);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal ref Field FieldRef(int i) => ref _fields[i];
}
