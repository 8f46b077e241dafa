using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Protocols.Http;

namespace Bastion.Protocols.HttpProxy;

/// <summary>http-proxy: the forward proxy (absolute-form requests and CONNECT).</summary>
public sealed class HttpProxyDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.HttpProxy;
    public string Name => "http-proxy";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string>
        { "source", "user", "group", "host", "port", "method", "path", "url", "header", "content_type", "size", "time", "sni", "not", "upgrade" };

    public void Validate(BastionConfig root, ListenerConfig listener, Action<SourcePos, string> error) { }

    /// <summary>`METHOD absolute-URL` or `CONNECT host:port`, mapped as the live session maps the request line.</summary>
    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error) =>
        HttpAttributes.TrySplitRequest(request, out var method, out var target, out error)
        // A malformed or ambiguous target is the live 400 (HttpAttributes.Refusal), not a usage error.
        && HttpAttributes.ProxyTarget(a, method, target, listener, new Policy.Canonical.CanonicalTarget(), out _) is var _;

    public Decision Decide(CompiledPolicy policy, RequestAttributes a, PolicyTrace? trace = null) => HttpDecisions.Decide(policy, a, trace);

    public IGatewayListener Create(ListenerContext ctx) => new HttpProxyListener(ctx);
}
