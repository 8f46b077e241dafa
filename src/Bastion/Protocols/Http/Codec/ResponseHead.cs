namespace Bastion.Protocols.Http.Codec;

/// <summary>A parsed response head. Reused per upstream connection: <see cref="ResponseParser"/> overwrites it.</summary>
public sealed class ResponseHead : HttpHead
{
    int _reasonStart, _reasonEnd;

    public int Status { get; private set; }

    /// <summary>The reason phrase as sent (may be empty).</summary>
    public ReadOnlySpan<byte> Reason => Slice(_reasonStart, _reasonEnd);

    /// <summary>1xx other than 101: an interim response; the final one follows on the same connection.</summary>
    public bool IsInterim => Status is >= 100 and < 200 && Status != 101;

    internal override void Reset()
    {
        base.Reset();
        Status = 0;
        _reasonStart = _reasonEnd = 0;
    }

    internal void SetStatusLine(int minor, int status, int reasonStart, int reasonEnd)
    {
        MinorVersion = minor;
        Status = status;
        _reasonStart = reasonStart;
        _reasonEnd = reasonEnd;
    }
}
