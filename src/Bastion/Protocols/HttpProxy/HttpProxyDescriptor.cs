using Bastion.Cli;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.HttpProxy;

/// <summary>http-proxy: the forward proxy (absolute-form requests and CONNECT).</summary>
public sealed class HttpProxyDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.HttpProxy;
    public string Name => "http-proxy";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string>
        { "source", "user", "group", "host", "port", "method", "path", "url", "header", "content_type", "size", "time", "sni", "not" };

    public void Validate(BastionConfig root, ListenerConfig listener, Action<SourcePos, string> error) { }

    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error) =>
        ExplainText.TryHttp(request, listener, a, out error);

    public IGatewayListener Create(ListenerContext ctx) => new HttpProxyListener(ctx);
}
