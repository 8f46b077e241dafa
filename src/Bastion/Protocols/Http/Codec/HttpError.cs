namespace Bastion.Protocols.Http.Codec;

/// <summary>What the codec says about input: wait for more bytes, a complete message part, or malformed.</summary>
public enum ParseResult { NeedMore, Complete, Invalid }

/// <summary>Why input is malformed: the status a gateway answers with (400, 431, 501, 505; 502 for responses) and why.</summary>
public readonly record struct HttpError(int Status, string Reason)
{
    public static HttpError Bad(string reason) => new(400, reason);
    public static HttpError BadResponse(string reason) => new(502, reason);
}
