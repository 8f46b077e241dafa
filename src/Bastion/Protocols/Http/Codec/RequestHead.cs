using System.Text;

namespace Bastion.Protocols.Http.Codec;

/// <summary>The four request-target forms (RFC 9112 §3.2).</summary>
public enum TargetForm : byte { Origin, Absolute, Authority, Asterisk }

/// <summary>A parsed request head. Reused per connection: <see cref="RequestParser"/> overwrites it.</summary>
public sealed class RequestHead : HttpHead
{
    static readonly string[] Methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];

    int _methodEnd, _targetStart, _targetEnd;
    string? _method;

    public ReadOnlySpan<byte> MethodBytes => Slice(0, _methodEnd);

    /// <summary>The method as a string; common methods are shared instances (no allocation).</summary>
    public string Method => _method ??= MethodString(MethodBytes);

    public ReadOnlySpan<byte> Target => Slice(_targetStart, _targetEnd);

    public TargetForm Form { get; private set; }
    public bool IsHead { get; private set; }
    public bool IsConnect { get; private set; }

    /// <summary>Absolute-form: the scheme (lower-cased by the parser's check: http or https, else other).</summary>
    public ReadOnlySpan<byte> Scheme => Slice(_targetStart, _targetStart + _schemeLength);
    int _schemeLength;

    /// <summary>
    /// The authority the request is for: from the target (absolute- and authority-form, RFC 9112 §3.2.2: the
    /// target wins over Host) or else the Host field. Empty when neither names one.
    /// </summary>
    public ReadOnlySpan<byte> Authority => Slice(_authorityStart, _authorityStart + _authorityLength);
    int _authorityStart, _authorityLength;

    /// <summary>The host part of <see cref="Authority"/> (brackets of an IP literal kept).</summary>
    public ReadOnlySpan<byte> Host => Slice(_authorityStart, _authorityStart + _hostLength);
    int _hostLength;

    /// <summary>The port named in <see cref="Authority"/>, or -1 when it names none.</summary>
    public int Port { get; private set; }

    /// <summary>The path and query: the target itself in origin-form, the part after the authority in absolute-form ("/" when empty).</summary>
    public ReadOnlySpan<byte> PathAndQuery => _pathStart < 0 ? "/"u8 : Slice(_pathStart, _targetEnd);
    int _pathStart;

    /// <summary>Index of the Host field, or -1.</summary>
    public int HostField { get; private set; }

    /// <summary>`Expect: 100-continue` was sent.</summary>
    public bool Expects100 { get; private set; }

    internal override void Reset()
    {
        base.Reset();
        _methodEnd = _targetStart = _targetEnd = 0;
        _method = null;
        Form = TargetForm.Origin;
        IsHead = IsConnect = false;
        _schemeLength = _authorityStart = _authorityLength = _hostLength = 0;
        _pathStart = -1;
        Port = -1;
        HostField = -1;
        Expects100 = false;
    }

    /// <summary>Offsets into the head; <paramref name="m"/> is the method as found in the input (the bytes are copied in later).</summary>
    internal void SetRequestLine(ReadOnlySpan<byte> m, int targetStart, int targetEnd, int minor)
    {
        _methodEnd = m.Length;
        _targetStart = targetStart;
        _targetEnd = targetEnd;
        MinorVersion = minor;
        IsHead = m.SequenceEqual("HEAD"u8);
        IsConnect = m.SequenceEqual("CONNECT"u8);
    }

    /// <summary>After the fields are in: the target's form and authority, Host, framing, Connection, Expect.</summary>
    internal bool Interpret(out HttpError error)
    {
        var target = Target;
        int hostCount = Count(KnownHeader.Host);
        HostField = IndexOf(KnownHeader.Host);
        if (hostCount > 1) { error = HttpError.Bad("more than one Host header"); return false; }
        if (hostCount == 0 && MinorVersion == 1) { error = HttpError.Bad("HTTP/1.1 request without a Host header"); return false; }
        if (HostField >= 0)
        {
            var problem = Codec.Authority.Parse(Value(HostField), out int hl, out int port);
            if (problem != Codec.Authority.Problem.None) { error = HttpError.Bad(problem == Codec.Authority.Problem.Userinfo ? "userinfo in the Host header" : "invalid Host header"); return false; }
            _authorityStart = this[HostField].ValueStart;
            _authorityLength = this[HostField].ValueEnd - _authorityStart;
            _hostLength = hl;
            Port = port;
        }

        if (IsConnect)
        {
            Form = TargetForm.Authority;
            var problem = Codec.Authority.Parse(target, out int hl, out int port);
            if (problem == Codec.Authority.Problem.Userinfo) { error = HttpError.Bad("userinfo in the request target"); return false; }
            if (problem != Codec.Authority.Problem.None || port <= 0 || hl == 0) { error = HttpError.Bad("CONNECT needs host:port"); return false; }
            SetAuthority(_targetStart, target.Length, hl, port);
        }
        else if (target[0] == (byte)'/')
        {
            Form = TargetForm.Origin;
            _pathStart = _targetStart;
        }
        else if (target.Length == 1 && target[0] == (byte)'*')
        {
            if (!MethodBytes.SequenceEqual("OPTIONS"u8)) { error = HttpError.Bad("asterisk-form target on a method other than OPTIONS"); return false; }
            Form = TargetForm.Asterisk;
        }
        else if (!ParseAbsolute(target, out error)) return false;

        if (!FramingRules.ForRequest(this, out var framing, out error)) return false;
        Framing = framing;
        if (!FramingRules.Connection(this, 400, out error)) return false;
        Expects100 = HasToken(KnownHeader.Expect, "100-continue"u8);
        return true;
    }

    /// <summary>absolute-URI (RFC 3986 §4.3) as far as a proxy needs it: scheme "://" authority [path-abempty] [?query].</summary>
    bool ParseAbsolute(ReadOnlySpan<byte> target, out HttpError error)
    {
        error = HttpError.Bad("malformed request target");
        int colon = target.IndexOf((byte)':');
        if (colon <= 0 || !IsAlpha(target[0])) return false;
        foreach (var b in target[..colon])
            if (!(IsAlpha(b) || HttpChars.IsDigit(b) || b is (byte)'+' or (byte)'-' or (byte)'.')) return false;
        if (!target[colon..].StartsWith("://"u8)) return false;
        int aStart = colon + 3;
        int aEnd = target[aStart..].IndexOfAny((byte)'/', (byte)'?', (byte)'#');
        aEnd = aEnd < 0 ? target.Length : aStart + aEnd;
        var problem = Codec.Authority.Parse(target[aStart..aEnd], out int hl, out int port);
        if (problem == Codec.Authority.Problem.Userinfo) { error = HttpError.Bad("userinfo in the request target"); return false; }
        if (problem != Codec.Authority.Problem.None || hl == 0) { error = HttpError.Bad("invalid authority in the request target"); return false; }
        Form = TargetForm.Absolute;
        _schemeLength = colon;
        SetAuthority(_targetStart + aStart, aEnd - aStart, hl, port);
        _pathStart = aEnd == target.Length ? -1 : _targetStart + aEnd;
        error = default;
        return true;
    }

    void SetAuthority(int start, int length, int hostLength, int port)
    {
        _authorityStart = start;
        _authorityLength = length;
        _hostLength = hostLength;
        Port = port;
    }

    static bool IsAlpha(byte b) => (uint)((b | 0x20) - 'a') <= 'z' - 'a';

    static string MethodString(ReadOnlySpan<byte> m)
    {
        foreach (var k in Methods)
            if (m.Length == k.Length && Ascii.Equals(m, k)) return k;
        return Encoding.ASCII.GetString(m);
    }
}
