using Bastion.Protocols.Http.Codec;

namespace Bastion.Protocols.Http.Engine;

/// <summary>
/// A header value as a string, made again only when its bytes change: a keep-alive client sends the same Host,
/// User-Agent and Referer on every request, an upstream the same Content-Type, so the log line's strings are made
/// once per connection instead of once per request.
/// </summary>
public sealed class LastString
{
    byte[] _bytes = [];
    int _length = -1;
    string _text = "";

    public string Get(ReadOnlySpan<byte> value)
    {
        if (value.Length == _length && value.SequenceEqual(_bytes.AsSpan(0, _length))) return _text;
        if (_bytes.Length < value.Length) _bytes = new byte[Math.Max(value.Length, 32)];
        value.CopyTo(_bytes);
        _length = value.Length;
        return _text = HttpHead.Latin1(value);
    }
}
