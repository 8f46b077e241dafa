using Bastion.Configuration;
using Bastion.Gateway;

namespace Bastion.Hosting;

/// <summary>Creates a listener from its configuration through the type's descriptor.</summary>
public static class ListenerFactory
{
    public static IGatewayListener Create(ListenerContext ctx, ListenerConfig l) =>
        ListenerDescriptors.Find(l.Type)?.Create(ctx)
        ?? throw new NotSupportedException($"listener type '{ListenerTypes.Name(l.Type)}' is not built yet");
}
