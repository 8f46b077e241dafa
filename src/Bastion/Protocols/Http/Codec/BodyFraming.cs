namespace Bastion.Protocols.Http.Codec;

/// <summary>How a message body is delimited (RFC 9112 §6.3).</summary>
public enum BodyKind : byte
{
    /// <summary>No body: a request without Content-Length or Transfer-Encoding, HEAD, 1xx, 204, 304.</summary>
    None,
    /// <summary>Exactly <see cref="BodyFraming.Length"/> bytes (Content-Length).</summary>
    Length,
    /// <summary>Transfer-Encoding: chunked.</summary>
    Chunked,
    /// <summary>A response without either header: the body ends when the server closes.</summary>
    UntilClose,
}

public readonly record struct BodyFraming(BodyKind Kind, long Length = 0)
{
    public static readonly BodyFraming Empty = new(BodyKind.None);
    public static readonly BodyFraming Chunked = new(BodyKind.Chunked);
    public static readonly BodyFraming UntilClose = new(BodyKind.UntilClose);

    public bool HasBody => Kind != BodyKind.None;
}
