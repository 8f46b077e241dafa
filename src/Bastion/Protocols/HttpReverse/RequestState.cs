using Bastion.Gateway;
using Bastion.Policy;
using Microsoft.AspNetCore.Http;

namespace Bastion.Protocols.HttpReverse;

/// <summary>What one request carries through the pipeline and the transformer.</summary>
sealed class RequestState
{
    /// <summary>The request's record: its access-log line and metrics.</summary>
    public required Exchange X;
    public string Id => X.Id;
    public required ReverseState State;
    public readonly RequestAttributes Attrs = new();
    public ClientConnection? Conn;
    public CompiledRoute? Route;
    public UpstreamTarget? Target;
    public Decision Decision;
    public Decision? ResponseDenied;
    public bool StripAuthorization;
    public long BytesIn, BytesOut;
    public CountingStream? InCounter, OutCounter;
}

/// <summary>Request headers as the policy engine sees them, without copying.</summary>
sealed class HeaderSource(IHeaderDictionary headers) : IHeaderSource
{
    public string? Get(string name) =>
        headers.TryGetValue(name, out var v) && v.Count > 0 ? (v.Count == 1 ? v[0] : string.Join(", ", v.ToArray())) : null;
}
