//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on single configs of
//! topics, made durable and applied to every partition without a restart; broker and logger
//! resources are answered as `alter_configs::change_configs` describes.

use spate_wire::header::RequestHeader;
use spate_wire::kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use spate_wire::kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse, IncrementalAlterConfigsResponse,
};

use super::alter_configs::{change_configs, Resource};
use super::{respond, str_bytes};
use crate::connection::ResponseParts;
use crate::core::Core;
use crate::metadata::alter::{AlterOp, Alteration, ConfigChange};

pub async fn handle(
    core: &Core,
    header: &RequestHeader,
    request: IncrementalAlterConfigsRequest,
) -> Option<ResponseParts> {
    let resources = request
        .resources
        .iter()
        .map(|r| {
            let changes = r
                .configs
                .iter()
                .map(|c| {
                    Ok(ConfigChange {
                        key: c.name.to_string(),
                        op: AlterOp::try_from(c.config_operation)?,
                        value: c.value.as_ref().map(|v| v.to_string()),
                    })
                })
                .collect::<Result<Vec<_>, _>>();
            Resource {
                resource_type: r.resource_type,
                name: r.resource_name.to_string(),
                alteration: changes.map(Alteration::Incremental),
            }
        })
        .collect();
    let outcomes = change_configs(core, resources, request.validate_only).await;
    let mut response = IncrementalAlterConfigsResponse::default();
    for (resource, (code, message)) in request.resources.iter().zip(outcomes) {
        let mut result = AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        result.error_code = code.code();
        result.error_message = message.as_deref().map(str_bytes);
        response.responses.push(result);
    }
    respond(header, &response)
}
